"""The C++ Milvus 2.3.5 standalone launcher (vidstrata.stack.milvus): start, stop by the engine's own PID, reuse data."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from index.settings import IndexSettings
from index.store import ClipRecord, VideoIndex, VideoRecord
from vidstrata.stack.milvus import MILVUS_STANDALONE_VENV, milvus_standalone_binary, start_milvus_standalone

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def installed() -> None:
    try:
        milvus_standalone_binary(MILVUS_STANDALONE_VENV)
    except (subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"PyPI milvus 2.3.5 cannot be installed here: {exc}")


def _video(video_id: str) -> tuple[VideoRecord, list[ClipRecord]]:
    vector = np.eye(8, dtype=np.float32)[0]
    return (VideoRecord(video_id, vector, 2.0, 1, {}, 1.7e9), [ClipRecord(video_id, 0, 0.0, 2.0, vector)])


def test_standalone_stops_by_the_engines_pid_and_keeps_its_data(installed: None, tmp_path: Path) -> None:
    server = start_milvus_standalone(tmp_path / "milvus")
    engine = server.engine_pid()
    try:
        assert engine is not None and server.rss_bytes() > 0
        with VideoIndex(IndexSettings(milvus_uri=server.uri, vector_dim=8, collection_prefix="t_")) as index:
            index.replace_video(*_video("kept"))
    finally:
        server.stop()
    assert not Path(f"/proc/{engine}").exists() or "Z" in Path(f"/proc/{engine}/stat").read_text().split(")")[1][:3]
    assert not server.process.alive()

    again = start_milvus_standalone(tmp_path / "milvus")  # the same folder: the rows are still there
    try:
        with VideoIndex(IndexSettings(milvus_uri=again.uri, vector_dim=8, collection_prefix="t_")) as index:
            assert index.counts() == (1, 1)
            assert [h.video_id for h in index.search_videos(np.eye(8, dtype=np.float32)[0], 1)] == ["kept"]
    finally:
        again.stop()
