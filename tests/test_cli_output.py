"""What the CLI prints: ingest progress without a terminal, the search table for sentences and images, --id."""

from __future__ import annotations

import io
from collections.abc import Iterator

from rich.console import Console
from typer.testing import CliRunner

from vidstrata.client.commands import app
from vidstrata.client.ingest_progress import follow
from vidstrata.client.search_table import hits_table
from vidstrata.v1 import search_pb2

Video = search_pb2.Video


class ScriptedStatus:
    """WatchVideo streams from a script (a fake of GatewayClient.watch_video)."""

    def __init__(self, script: dict[str, list[Video]]) -> None:
        self.script = script

    def watch_video(self, video_id: str) -> Iterator[Video]:
        yield from self.script[video_id]


def test_ingest_wait_without_a_terminal_prints_a_line_per_change(capsys):
    running = [Video(status=Video.RUNNING, stage="decode", progress=10), Video(status=Video.RUNNING, stage="decode", progress=40),
               Video(status=Video.RUNNING, stage="embed", progress=70)]
    client = ScriptedStatus({
        "a": [Video(status=Video.PENDING), *running, Video(status=Video.READY, clip_count=3, duration_s=12.0)],
        "b": [Video(status=Video.FAILED, reason="no video stream")],
    })
    log = io.StringIO()
    assert not follow(client, [("a", "a.mp4"), ("b", "b.mp4")], poll_s=0, console=Console(file=log, force_terminal=False))  # type: ignore[arg-type]
    lines = log.getvalue().splitlines()  # the two streams interleave as they come
    assert [line for line in lines if line.startswith("a.mp4")] == [
        "a.mp4 (a): pending", "a.mp4 (a): running decode", "a.mp4 (a): running embed", "a.mp4 (a): ready"]
    assert [line for line in lines if line.startswith("b.mp4")] == ["b.mp4 (b): failed"]
    printed = capsys.readouterr().out
    assert "no video stream" in printed and "1 ready, 1 failed" in printed


def _reply() -> search_pb2.SearchResponse:
    hit = search_pb2.SearchHit(video_id="cafe_tour", score=0.9,
                               levels=search_pb2.LevelScores(video_sentence=0.2, clip_sentence=0.3, clip_phrase=0.25,
                                                             speech_sentence=0.6),
                               best_clip=search_pb2.ClipSpan(start_s=0.0, end_s=4.0))
    return search_pb2.SearchResponse(hits=[hit], phrases=["making a latte"])


def _render(table) -> str:
    console = Console(file=io.StringIO(), width=200)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_the_search_table_of_a_sentence_shows_every_level():
    text = _render(hits_table(_reply(), query="someone making a latte"))
    for column in ("video·sent", "clip·sent", "clip·phrase", "speech", "screen text"):
        assert column in text
    assert "0.600" in text and "–" in text  # speech scored, no screen text


def test_the_search_table_of_an_image_names_its_columns_for_the_image():
    text = _render(hits_table(_reply(), image_name="coffee.png"))
    assert "image coffee.png" in text and "video·image" in text and "clip·image" in text
    for column in ("sent", "phrase", "speech", "screen text"):
        assert column not in text


def test_ingest_id_names_one_video_only():
    result = CliRunner().invoke(app, ["ingest", "a.mp4", "b.mp4", "--id", "x"])
    assert result.exit_code != 0 and "--id names one video, but 2 sources were given" in result.output


def test_ingest_refuses_an_empty_id_instead_of_making_a_new_video():
    result = CliRunner().invoke(app, ["ingest", "a.mp4", "--id", ""])
    assert result.exit_code == 1 and "--id is empty" in result.output


def test_a_top_k_beyond_32_bits_is_a_usage_error_not_a_traceback():
    result = CliRunner().invoke(app, ["search", "bike", "-k", "99999999999"])
    assert result.exit_code == 2 and "Error" in result.output and "Traceback" not in result.output


def test_a_url_of_any_scheme_goes_to_the_gateway_which_says_what_it_takes():
    # No gateway listens on port 1: the CLI got past its own checks ("no such file" was its answer before).
    result = CliRunner().invoke(app, ["ingest", "ftp://example.com/x.mp4", "--gateway", "127.0.0.1:1"])
    assert result.exit_code == 1 and "no such file" not in result.output


def test_the_summary_shows_no_clips_or_duration_for_a_failed_video(capsys):
    client = ScriptedStatus({"b": [Video(status=Video.FAILED, reason="empty file (0 bytes)")]})
    follow(client, [("b", "b.mp4")], poll_s=0, console=Console(file=io.StringIO(), force_terminal=False))  # type: ignore[arg-type]
    row = next(line for line in capsys.readouterr().out.splitlines() if "b.mp4" in line)
    assert "–" in row and "0.0 s" not in row
