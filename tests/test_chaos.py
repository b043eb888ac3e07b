"""A short chaos run (bench.chaos --tiny): worker children killed, Triton, Milvus and Redis restarted while videos
are submitted; every video ends READY exactly once or FAILED with a reason, and Search answers."""

from __future__ import annotations

import pytest

from bench.chaos import main

pytestmark = pytest.mark.e2e


def test_nothing_is_lost_duplicated_or_stuck_under_faults(model_repository, tmp_path):
    result = main(["--tiny", "--model-repository", str(model_repository), "--results-dir", str(tmp_path)])
    assert result["submissions"] >= 20
    assert all(result["faults"][kind] >= 1 for kind in ("restart_triton", "restart_milvus", "restart_redis"))
    assert (result["lost"], result["duplicated"], result["stuck"]) == ([], [], [])
    assert result["wrong"] == [] and result["failed_without_reason"] == [] and result["orphan_clips"] == 0
    assert result["search_ok"] and result["worker_restarts"] == 0
    assert (tmp_path / "chaos.md").is_file()
