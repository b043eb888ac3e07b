"""Which modalities a submission asks its ingest for (gateway.ingest.requested_modalities), without a server."""

from __future__ import annotations

import pytest

from vidstrata.gateway.errors import InvalidArgument
from vidstrata.gateway.ingest import requested_modalities
from vidstrata.gateway.messages import modality_switches
from vidstrata.jobs.contract import MODALITIES
from vidstrata.v1 import search_pb2


def test_unset_leaves_the_deployment_to_choose_and_a_switch_left_out_is_on():
    assert requested_modalities(None) is None
    assert requested_modalities({}) == ["speech", "screen_text"]
    assert requested_modalities({"visual": True, "speech": False}) == ["screen_text"]
    assert requested_modalities({"speech": False, "screen_text": False}) == []


def test_visual_cannot_be_off():
    with pytest.raises(InvalidArgument, match="modalities.visual cannot be off"):
        requested_modalities({"visual": False, "speech": True})


def test_the_switches_are_the_fields_the_request_set():
    assert modality_switches(search_pb2.SubmitVideoRequest(uri="/v.mp4")) is None
    request = search_pb2.SubmitVideoRequest(modalities=search_pb2.Modalities(visual=True, screen_text=False))
    assert modality_switches(request) == {"visual": True, "screen_text": False}
    assert {f.name for f in search_pb2.Modalities.DESCRIPTOR.fields} == {"visual", *MODALITIES}
