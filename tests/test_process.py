import signal
import sys
import time
from pathlib import Path

import pytest

from vidstrata.stack.process import ManagedProcess, ProcessFailed, free_port, port_open


def test_stop_kills_the_whole_process_group(tmp_path):
    # A parent that ignores SIGTERM and spawns a child: stop() must leave neither behind.
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = ManagedProcess("stubborn", [sys.executable, "-c", script], tmp_path / "log").start()
    proc.wait_ready(lambda: (tmp_path / "log").read_text().strip() != "", timeout_s=10)
    child_pid = int((tmp_path / "log").read_text().split()[0])
    proc.stop(timeout_s=1, sig=signal.SIGTERM)
    assert not proc.alive()
    time.sleep(0.2)
    assert not _running(child_pid)


def _running(pid: int) -> bool:
    """Alive and not a zombie (PID 1 in a container may never reap orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_wait_ready_reports_the_log_of_a_process_that_died(tmp_path):
    proc = ManagedProcess(
        "crasher", [sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"], tmp_path / "log"
    ).start()
    with pytest.raises(ProcessFailed, match="boom: bad config"):
        proc.wait_ready(lambda: False, timeout_s=10)


def test_free_port_is_free():
    assert not port_open(free_port())


def test_redis_fixture_serves(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.set("k", "v")
    assert client.get("k") == b"v"


def test_children_die_with_their_supervisor(tmp_path):
    """A supervisor killed with SIGKILL leaves no managed child behind."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from vidstrata.stack.process import ManagedProcess\n"
        "child = ManagedProcess('sleeper', [sys.executable, '-c', 'import time; time.sleep(60)'], Path(sys.argv[1])).start()\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    supervisor = ManagedProcess("supervisor", [sys.executable, "-c", script, str(tmp_path / "child.log")], tmp_path / "log").start()
    supervisor.wait_ready(lambda: (tmp_path / "log").read_text().strip() != "", timeout_s=20)
    child_pid = int((tmp_path / "log").read_text().split()[0])
    assert _running(child_pid)
    supervisor.stop(sig=signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _running(child_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(child_pid)
