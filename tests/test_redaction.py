"""spec.redaction: credentials in source URLs are replaced by *** in what is shown and logged, nothing else is."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from vidstrata.spec.redaction import RedactingFilter, install_log_redaction, redact_text, redact_uri, url_secrets


@pytest.mark.parametrize(("uri", "shown"), [
    ("http://alice:s3cret@127.0.0.1:8080/v.mp4", "http://***@127.0.0.1:8080/v.mp4"),
    ("https://ghp_token123@github.com/o/r/v.mp4", "https://***@github.com/o/r/v.mp4"),
    ("https://b.s3.amazonaws.com/v.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2026&"
     "X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-Security-Token=FQo&X-Amz-Signature=9f86d08",
     "https://b.s3.amazonaws.com/v.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***&"
     "X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-Security-Token=***&X-Amz-Signature=***"),
    ("https://a.blob.core.windows.net/c/v.mp4?sv=2022-11-02&se=2026&sp=r&sig=ab%2Bcd",
     "https://a.blob.core.windows.net/c/v.mp4?sv=2022-11-02&se=2026&sp=r&sig=***"),
    ("https://d.cloudfront.net/v.mp4?Expires=1&Signature=abc~&Key-Pair-Id=K2", "https://d.cloudfront.net/v.mp4?Expires=1&Signature=***&Key-Pair-Id=***"),
    ("https://cdn.example/v.mp4?access_token=t0k&api_key=k3y&password=pw&lang=en",
     "https://cdn.example/v.mp4?access_token=***&api_key=***&password=***&lang=en"),
    ("https://cdn.example/v.mp4#access_token=t0k", "https://cdn.example/v.mp4#access_token=***"),
])
def test_secrets_in_a_uri_are_redacted(uri, shown):
    assert redact_uri(uri) == shown


@pytest.mark.parametrize("uri", ["/videos/a b.mp4", "file:///videos/a.mp4", "http://h/v.mp4?",
                                 "https://cdn.example/v.mp4?lang=en&t=30", "https://[::1]:8443/v.mp4", ""])
def test_a_uri_without_secrets_is_returned_as_given(uri):
    assert redact_uri(uri) == uri


def test_urls_inside_a_text_and_known_secrets_are_redacted():
    text = ("retry 2 of 8 in 4 s: http://alice:s3cret@h:81/v.mp4?sig=xyz: HTTP 503; "
            "SourceUnavailable('https://bob:pw0rd@other/x')")
    assert redact_text(text) == ("retry 2 of 8 in 4 s: http://***@h:81/v.mp4?sig=***: HTTP 503; "
                                 "SourceUnavailable('https://***@other/x')")
    assert redact_text("nonnumeric port: 's3cret@h'", ["s3cret"]) == "nonnumeric port: '***@h'"
    assert redact_text("http://[::1 alice:s3cret@h") == "http://[::1 alice:s3cret@h"  # not a URL: left alone
    assert redact_text("http://alice:s3cret@[::1/v") == "http://***@[::1/v"  # unparseable, still found


def test_url_secrets_are_the_password_and_secret_parameter_values():
    assert url_secrets("http://alice:s3cret@h/v?sig=ab%2Bcd&lang=en") == ["ab%2Bcd", "ab+cd", "s3cret"]
    assert url_secrets("https://tok3n@h/v") == ["tok3n"]  # a token given as the user name
    assert url_secrets("/local/path.mp4") == []


def test_the_log_filter_redacts_messages_and_tracebacks(caplog):
    logger = logging.getLogger("test_redaction")
    caplog.handler.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.INFO, logger="test_redaction"):
            logger.info("fetching %s", "http://alice:s3cret@h/v.mp4")
            try:
                raise RuntimeError("http://alice:s3cret@h/v.mp4: HTTP 503")
            except RuntimeError:
                logger.exception("ingest failed")
        assert "s3cret" not in caplog.text and "http://***@h/v.mp4: HTTP 503" in caplog.text
        assert caplog.records[0].getMessage() == "fetching http://***@h/v.mp4"
    finally:
        caplog.handler.filters.clear()


def test_installing_the_filter_twice_adds_it_once():
    logger = logging.getLogger("test_redaction.install")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        install_log_redaction(logger)
        install_log_redaction(logger)
        assert [type(f) for f in handler.filters] == [RedactingFilter]
    finally:
        logger.removeHandler(handler)


def test_the_worker_app_installs_the_filter_on_celerys_log_handlers():
    script = """
import logging
from celery.utils.log import get_task_logger
from vidstrata.workers.celery_app import app
app.log.setup(loglevel="INFO")
logging.getLogger("vidstrata.workers.tasks").warning("ingest of x: %s", "http://alice:s3cret@h/v.mp4")
get_task_logger("vidstrata.workers.tasks").warning("task says http://bob:pw123@h/v.mp4?sig=feedface")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    log = done.stdout + done.stderr
    assert "ingest of x: http://***@h/v.mp4" in log and "task says http://***@h/v.mp4?sig=***" in log, log
    assert not any(secret in log for secret in ("s3cret", "pw123", "feedface"))
