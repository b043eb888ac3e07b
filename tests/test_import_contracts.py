"""The import contracts of DESIGN.md §2 (pyproject `[tool.importlinter]`) hold, and they do fail on a wrong arrow.

Each case adds one module with an arrow the design forbids to a copy of the packages and expects `lint-imports`
to reject it, naming the contract: the arrows the house once had must not come back unnoticed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("spec", "media", "encoders", "export", "inference", "index", "jobs", "workers", "gateway", "client", "vidstrata",
            "bench")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract() -> None:
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("index/launcher.py", "import vidstrata.stack.process", "index is Milvus only"),
    ("inference/server.py", "from vidstrata.stack import process", "inference imports only spec"),
    ("encoders/prep.py", "import vidstrata.inference.encoder", "encoders (torch models) import only media and spec"),
    ("inference/manifest.py", "import vidstrata.encoders.model", "inference imports only spec"),
    ("index/status.py", "import redis", "index is Milvus only"),
    ("workers/query.py", "import vidstrata.gateway.service", "gateway and workers never import each other"),
    ("spec/model.py", "import torch", "spec is the torch-free bottom"),
    ("vidstrata/samples.py", "import bench.synthetic", "the CLI never imports the benchmarks"),
    ("gateway/old_name.py", "import spec.validation", "nothing imports a room by its folder name"),
    ("vidstrata/newroom.py", "import vidstrata.spec", "every room has its place"),
    ("client/vidstrata/client/vectors.py", "import numpy", "the client (vidstrata-client) stands alone"),
])
def test_a_forbidden_arrow_breaks_the_build(tmp_path: Path, module: str, line: str, contract: str) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pb"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / module).write_text(f"{line}\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout, result.stdout
