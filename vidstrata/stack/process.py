"""Start and stop the real servers (tritonserver, redis-server, milvus-lite, workers, gateway).

Shared by `vidstrata up` and the test fixtures, so both start each component the same way:
in a new process session, so that one signal to the group stops it with all its children.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port that is free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def children_of(pid: int) -> list[int]:
    """Direct children of pid (Linux /proc; empty elsewhere or once pid is gone)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def process_rss(pid: int, children: bool = False) -> int:
    """Resident memory (VmRSS) of pid, plus its direct children's when asked, in bytes; 0 for a process that is gone."""
    total = 0
    for one in [pid, *(children_of(pid) if children else [])]:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


_PR_SET_PDEATHSIG = 1


def exec_dying_with_parent(supervisor_pid: int, argv: list[str]) -> None:
    """Become `argv`, set to get SIGTERM when our parent dies, even by SIGKILL, so nothing is orphaned (Linux).

    A trampoline rather than Popen's preexec_fn: that forces a plain fork() in the supervisor, and gRPC's
    fork handlers then break the child (tritonserver died with "epoll_wait: Bad file descriptor").
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() != supervisor_pid:  # the supervisor died before prctl took effect
        raise SystemExit(1)
    os.execvp(argv[0], argv)


class ProcessFailed(RuntimeError):
    """A managed process exited or did not become ready; the message carries its log tail."""


class ManagedProcess:
    """One server process in its own session, with its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vidstrata.stack.process", str(os.getpid()), *self.argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Poll `ready` until it holds; fail with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcessFailed(f"{self.name} exited during start-up:\n{self.log_tail()}")
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001 - a probe that errors simply means "not ready yet"
                pass
            time.sleep(0.1)
        raise ProcessFailed(f"{self.name} not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 15.0, sig: int = signal.SIGTERM) -> None:
        """Signal the whole process group, then SIGKILL whatever is left after the timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=5)


if __name__ == "__main__":
    exec_dying_with_parent(int(sys.argv[1]), sys.argv[2:])
