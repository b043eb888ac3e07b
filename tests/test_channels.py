"""The channel table (spec.channels) is the one vocabulary: the wire, the settings, the index and the worker's
stages agree with it, and the ingest payload reads every version a gateway may have queued."""

from __future__ import annotations

import pytest

from vidstrata.gateway.settings import GatewaySettings
from vidstrata.jobs.contract import MODALITIES, PAYLOAD_VERSION, IngestPayload, PayloadError
from vidstrata.spec.channels import CHANNELS, LEVELS, SEGMENT_KINDS, TIMED_TEXT_CHANNELS, Channel, channel
from vidstrata.v1 import search_pb2
from vidstrata.workers.ingest import STAGES
from vidstrata.workers.settings import WorkerSettings


def test_the_levels_are_the_wires_level_scores_in_order() -> None:
    wire = [f.name for f in search_pb2.LevelScores.DESCRIPTOR.fields if f.name != "frame_word"]
    assert list(LEVELS) == wire


def test_the_channels_are_the_wires_modalities_and_timed_texts() -> None:
    # the lexical channel reads the other channels' texts, no modality of its own
    assert [f.name for f in search_pb2.Modalities.DESCRIPTOR.fields] == [c.value for c in Channel
                                                                         if c is not Channel.LEXICAL]
    video_fields = {f.name for f in search_pb2.Video.DESCRIPTOR.fields}
    assert {c.text_field for c in TIMED_TEXT_CHANNELS} <= video_fields
    assert MODALITIES == SEGMENT_KINDS == ("speech", "screen_text")


@pytest.mark.parametrize("settings", [WorkerSettings, GatewaySettings])
def test_every_switch_is_a_setting_of_both_services(settings: type) -> None:
    switches = {c.switch for c in CHANNELS.values() if c.switch}
    assert switches <= set(settings.model_fields)
    assert all(settings.model_fields[s].annotation is bool for s in switches)


def test_every_timed_text_channel_has_a_worker_stage() -> None:
    assert set(STAGES) == {c.channel for c in TIMED_TEXT_CHANNELS}


def test_an_unknown_channel_is_refused_by_name() -> None:
    assert channel("speech").segment_kind == "speech"
    with pytest.raises(ValueError, match="the channels are visual, speech, screen_text"):
        channel("smell")


def test_the_payload_round_trips_and_reads_the_version_before_it() -> None:
    payload = IngestPayload("v1", "https://example.com/v.mp4", {"lang": "en"}, ("speech",))
    assert IngestPayload.from_task_args([payload.to_message()]) == payload
    assert IngestPayload.from_task_args(["v1", "https://example.com/v.mp4", {"lang": "en"}, ["speech"]]) == payload
    assert IngestPayload.from_task_args(["v1", "u", {}]).modalities is None


def test_a_payload_with_a_tenant_or_model_versions_is_version_2_and_one_without_stays_version_1() -> None:
    plain = IngestPayload("v1", "u", {}, None)
    assert plain.to_message()["version"] == 1 and "tenant" not in plain.to_message()  # old workers read it
    for payload in (IngestPayload("v1", "u", {}, None, tenant="acme"),
                    IngestPayload("v1", "u", {}, ("speech",), visual_model="t/f", text_model="t")):
        assert payload.to_message()["version"] == PAYLOAD_VERSION == 2
        assert IngestPayload.from_task_args([payload.to_message()]) == payload


@pytest.mark.parametrize("args", [[{"version": 3, "video_id": "v", "uri": "u"}], [], ["v"], [1, 2, 3]])
def test_a_payload_this_worker_cannot_read_is_refused(args: list) -> None:
    with pytest.raises(PayloadError):
        IngestPayload.from_task_args(args)
