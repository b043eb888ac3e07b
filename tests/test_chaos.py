"""A short chaos run (bench.chaos --tiny): worker children killed, Triton, Milvus and Redis restarted while videos
are submitted; every attempted submission is accounted for, every accepted video ends READY exactly once or FAILED
with a reason, Search answers, and the result file says what ran."""

from __future__ import annotations

import json

import pytest

from bench.chaos import FAULT_KINDS, TINY, main, table

pytestmark = pytest.mark.e2e


def test_every_submission_is_accounted_for_and_none_is_lost_duplicated_or_stuck_under_faults(model_repository, tmp_path):
    main(["--tiny", "--model-repository", str(model_repository), "--results-dir", str(tmp_path)])
    result = json.loads((tmp_path / "chaos.json").read_text())
    attempts = result["submissions"]

    # Every attempt is counted once: accepted, or refused with its gRPC code; every accepted one has an outcome.
    assert result["attempted"] == len(attempts) == TINY["submissions"]
    assert result["accepted"] + sum(result["refused"].values()) == result["attempted"]
    assert {a["code"] for a in attempts} <= {"OK", *result["refused"]}
    assert sum(result["outcomes"].values()) == result["accepted"]
    # No refusal is allowed here: the client retries UNAVAILABLE for --patience-s (120 s) and each server is back
    # within seconds, so a refusal is a submission the stack dropped.
    assert result["refused"] == {} and result["refused_but_queued"] == []
    assert set(result["outcomes"]) <= {"READY", "FAILED"}
    assert (result["lost"], result["stuck"], result["duplicated"]) == ([], [], [])
    assert result["wrong"] == [] and result["failed_without_reason"] == [] and result["orphan_clips"] == 0
    assert result["search_ok"] and result["worker_restarts"] == 0

    # The faults counted are those that ran, and as many as the settings asked for.
    assert result["faults"]["kill_child"] + result["kills_without_a_child"] == TINY["kills"]
    assert all(result["faults"][kind] == TINY["faults_per_kind"] for kind in FAULT_KINDS[1:])
    ran = [f for f in result["fault_log"] if f["done"] and f["kind"] in FAULT_KINDS]
    assert len(ran) == sum(result["faults"].values())
    assert [r["kind"] for r in result["recoveries"]] == [f["kind"] for f in ran if f["kind"] != "kill_child"]

    # The command and settings are kept, and the table is the JSON's.
    assert result["settings"]["submissions"] == TINY["submissions"] and "--tiny" in result["command"]
    assert (tmp_path / "chaos.md").read_text() == table(result) + "\n"
