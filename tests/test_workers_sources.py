"""A real worker refuses what its policy does not open (issue 22): FAILED at once, one reason, never retried, nothing
fetched or read.

The ingest stack opens 127.0.0.1/32 and the session's temp folder only (tests/fixtures/worker.py), so a second
loopback address, the name `localhost`, another spelling of 127.0.0.1, and files outside the temp folder stand in
for the cloud metadata service, in-cluster services and the worker's own files: no traffic leaves loopback.
"""

from __future__ import annotations

import http.server
import re
import threading
import uuid

import pytest

from vidstrata.jobs.status import IngestState
from vidstrata.workers.destinations import REFUSED
from vidstrata.workers.fetch import LOCAL_REFUSED

pytestmark = pytest.mark.e2e


def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{{{re.escape(label_text)}}} (\S+)$" if labels else rf"^{re.escape(name)} (\S+)$"
    return sum(float(m) for m in re.findall(pattern, text, re.M))


class _Counting(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.server.requests += 1  # type: ignore[attr-defined]
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def closed_server():
    """A server on 127.0.0.2, which the ingest stack does not open: it must never see a request."""
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _Counting)
    server.requests = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_worker_fails_closed_sources_at_once(ingest_stack, media_server, closed_server, tmp_path_factory):
    worker = ingest_stack.start_worker()
    port, closed = media_server.base_url.rsplit(":", 1)[1], closed_server.server_address[1]
    # A file that exists outside the roots (the session's temp folder): beside it, under a name of its own.
    outside = tmp_path_factory.getbasetemp().parent / f"vidstrata-outside-{uuid.uuid4().hex}.mp4"
    outside.write_bytes(b"\x00" * 1000)
    escape = tmp_path_factory.mktemp("sources") / "escape.mp4"
    escape.symlink_to(outside)
    try:
        urls = {
            "other-address": f"http://127.0.0.2:{closed}/v.mp4",
            "decimal": f"http://2130706434:{closed}/v.mp4",  # 127.0.0.2
            "mapped": f"http://[::ffff:127.0.0.2]:{closed}/v.mp4",
            "name": f"http://localhost:{port}/page",  # localhost is loopback by name, whatever it resolves to
            "allowed": media_server.url("status/404"),  # the control: the open address, failing on its own
        }
        files = {"outside": str(outside), "symlink-out": str(escape), "climb": f"{escape.parent}/{'../' * 12}etc/hostname"}
        before = worker.metrics()
        for video_id, uri in {**urls, **files}.items():
            ingest_stack.submit(video_id, uri)
        for video_id, uri in urls.items():
            record = ingest_stack.wait(video_id, timeout_s=30)
            assert record.state == IngestState.FAILED, record
            expected = f"{uri}: HTTP 404 Not Found" if video_id == "allowed" else f"{uri}: {REFUSED}"
            assert record.reason == expected, record.reason
        for video_id, uri in files.items():
            record = ingest_stack.wait(video_id, timeout_s=30)
            assert record.state == IngestState.FAILED and record.reason == f"{uri}: {LOCAL_REFUSED}", record
        after = worker.metrics()
        retried = (metric(after, "vidstrata_ingest_tasks_total", outcome="retried")
                   - metric(before, "vidstrata_ingest_tasks_total", outcome="retried"))
        assert retried == 0, "a refusal is permanent"
        assert closed_server.requests == 0  # type: ignore[attr-defined]
    finally:
        outside.unlink()
