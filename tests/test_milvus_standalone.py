"""The C++ Milvus 2.3.5 standalone launcher (vidstrata.stack.milvus): start, stop by the engine's own PID, reuse data."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from index.settings import IndexSettings
from index.store import ClipRecord, VideoIndex, VideoRecord
from vidstrata.stack.milvus import (
    ETCD_PEER_PORT,
    MILVUS_STANDALONE_VENV,
    milvus_standalone_binary,
    start_milvus_standalone,
)
from vidstrata.stack.milvus import is_running
from vidstrata.stack.process import ProcessFailed, port_open

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
    if port_open(ETCD_PEER_PORT):  # one standalone per machine: its etcd peer port is fixed
        with pytest.raises(ProcessFailed, match="another one is probably running"):
            start_milvus_standalone(tmp_path / "milvus")
        pytest.skip(f"another 2.3.5 standalone holds port {ETCD_PEER_PORT}")
    server = start_milvus_standalone(tmp_path / "milvus")
    engine = server.engine_pid()
    try:
        assert engine is not None and server.rss_bytes() > 0
        with VideoIndex(IndexSettings(milvus_uri=server.uri, vector_dim=8, collection_prefix="t_", milvus_timeout_s=120)) as index:
            index.replace_video(*_video("kept"))
    finally:
        server.stop()
    assert not is_running(engine)
    assert not server.process.alive()

    again = start_milvus_standalone(tmp_path / "milvus")  # the same folder: the rows are still there
    try:
        with VideoIndex(IndexSettings(milvus_uri=again.uri, vector_dim=8, collection_prefix="t_", milvus_timeout_s=120)) as index:
            assert index.counts() == (1, 1)
            assert [h.video_id for h in index.search_videos(np.eye(8, dtype=np.float32)[0], 1)] == ["kept"]
    finally:
        again.stop()
