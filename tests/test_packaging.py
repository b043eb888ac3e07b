"""The two distributions as a user installs them (issue 21): the server wheel puts exactly one import name,
`vidstrata`, into site-packages, and `vidstrata-client` installs alone (grpcio and protobuf, no numpy, no torch)
and talks to a running gateway through its `vidstrata` command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.gateway import start_gateway
from tests.photos import load_photo
from vidstrata.media.synthetic import write_scene_video

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{distribution: wheel} built from this tree as `make wheels` builds them."""
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run(["make", "-s", "-C", str(REPO), "clean-wheel-builds"], check=True, timeout=60)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO / "client"), str(REPO)], check=True, capture_output=True, timeout=600)
    return {"client": next(out.glob("vidstrata_client-*.whl")), "server": next(out.glob("vidstrata-*.whl"))}


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    return path / "bin" / "python"


def _run(python: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(python), "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_server_wheel_installs_one_import_name(wheels: dict[str, Path], tmp_path: Path) -> None:
    with zipfile.ZipFile(wheels["server"]) as wheel:
        names = wheel.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert wheel.read(top_level).decode().split() == ["vidstrata"]
    assert {n.split("/")[0] for n in names} == {"vidstrata", top_level.split("/")[0]}
    assert not [n for n in names if n.startswith(("vidstrata/client/", "vidstrata/v1/"))], "those are the client's"
    # A clean venv that borrows this one's third-party packages (not its editable vidstrata) for the dependencies.
    python = _venv(tmp_path / "venv")
    site = Path(_run(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])", tmp_path).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheels["client"]), str(wheels["server"])],
                   check=True, timeout=300)
    probe = _run(python, "import vidstrata.gateway.service as s, vidstrata.client as c; print(s.__file__); print(c.__file__)",
                 tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert all(line.startswith(str(site)) for line in probe.stdout.split()), probe.stdout


@pytest.mark.e2e
def test_the_client_installs_alone_and_talks_to_a_gateway(wheels, ingest_stack, triton, milvus_uri, tmp_path_factory):
    venv = tmp_path_factory.mktemp("client-venv")
    python = _venv(venv)
    pins = venv / "constraints.txt"  # the lock's versions without its hashes (a local wheel has none to check)
    pins.write_text("\n".join(re.findall(r"^[A-Za-z0-9._-]+==\S+", LOCK.read_text(), re.M)) + "\n")
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(pins), str(wheels["client"])],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    alone = _run(python, "import importlib.util as u; print([m for m in ('numpy', 'torch', 'vidstrata.gateway') "
                 "if u.find_spec(m)])", venv)
    assert alone.stdout.strip() == "[]", alone.stdout + alone.stderr

    ingest_stack.start_worker()  # stopped with the stack
    gateway = start_gateway(tmp_path_factory.mktemp("gw"), triton.grpc_url, milvus_uri, ingest_stack.redis_url,
                            collection_prefix=ingest_stack.env["VIDSTRATA_MILVUS_COLLECTION_PREFIX"])
    try:
        video = tmp_path_factory.mktemp("media") / "rocket.mp4"
        write_scene_video(video, [load_photo("rocket"), load_photo("coffee")], [1.5, 1.5], fps=10)
        command = venv / "bin" / "vidstrata"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

        def vidstrata(*args: str) -> str:
            done = subprocess.run([str(command), *args, "--gateway", gateway.address], cwd=venv, env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        assert "READY" in vidstrata("ingest", str(video), "--id", "rocket", "--wait")  # SubmitVideo, then GetVideo
        assert vidstrata("status", "rocket").startswith("rocket: READY")
        assert '"video_id": "rocket"' in vidstrata("search", "a rocket on the launch pad", "--json")
        help_text = subprocess.run([str(command), "--help"], env=env, capture_output=True, text=True, timeout=60).stdout
        assert "search" in help_text and " up " not in help_text, "the server's commands come only with the server"
    finally:
        gateway.stop()
