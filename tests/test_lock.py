"""The lock (requirements.lock) is what a fresh clone installs: it must pin, with hashes, a version of every
requirement pyproject.toml states, inside its range. A pyproject edit without `make lock` fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCKS = (ROOT / "requirements.lock", ROOT / "vidstrata" / "stack" / "requirements-milvus-standalone.txt")
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)")
BUILT_HERE = {"vidstrata-client"}  # installed from client/ by `make install`, so never in the lock


def _pins(lock: Path) -> dict[str, tuple[Version, list[str]]]:
    """{canonical name: (version, its hashes)} of one lock file in pip's requirements format."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    name = ""
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name = canonicalize_name(match.group(1))
            pins[name] = (Version(match.group(2)), [])
        elif line.strip().startswith("--hash=sha256:") and name:
            pins[name][1].append(line.strip().split(":", 1)[1].rstrip(" \\"))
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_pin_has_a_hash(lock: Path) -> None:
    pins = _pins(lock)
    assert pins, f"{lock.name} pins nothing"
    assert not [name for name, (_, hashes) in pins.items() if not hashes]


def test_the_lock_pins_every_declared_requirement_inside_its_range() -> None:
    pins = _pins(LOCKS[0])
    wrong = []
    for requirement in _declared():
        if canonicalize_name(requirement.name) in BUILT_HERE:
            continue
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            wrong.append(f"{requirement.name}: not in the lock")
        elif not requirement.specifier.contains(pinned[0], prereleases=True):
            wrong.append(f"{requirement.name}: locked {pinned[0]}, pyproject asks {requirement.specifier}")
    assert not wrong, "run `make lock`: " + "; ".join(wrong)


def test_the_lock_holds_the_cpu_build_of_torch() -> None:
    """A CUDA build is gigabytes and pulls nvidia-* packages: the local and CI installs use the CPU wheel."""
    version, _ = _pins(LOCKS[0])["torch"]
    assert version.local == "cpu"
