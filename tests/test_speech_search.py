"""Search by what is said or shown: narrated videos whose pictures are the same, told apart only by their speech,
and a silent one told apart by its on-screen text, through the real worker, Triton (ASR, OCR and text encoder),
Milvus Lite and the gateway."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from vidstrata.media.synthetic import narration_track, write_scene_video
from tests.fixtures.gateway import start_gateway
from tests.photos import load_photo
from vidstrata.client import GatewayClient

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing (make system-deps)")]

SAID = {  # video -> (second the line starts, the line); every video shows the same two photos
    "cycling": (4.0, "The boy rides his bicycle along the river."),
    "baking": (1.0, "Fresh bread comes out of the oven."),
    "railway": (5.0, "A long train leaves the station at noon."),
}
PARAPHRASES = {  # never the spoken words
    "cycling": "a kid pedalling a bike beside the water",
    "baking": "warm loaves taken from a hot stove",
    "railway": "a railway departure at midday",
}


SHOWN = "Summer sale: 40% off all running shoes"
CODE = "Order TX-4471 ships today"  # the lexical channel: a code OCR may read as "TX-4471", "TX 4471" or "TX4471"


@pytest.fixture(scope="module")
def searched(ingest_stack, triton, milvus_uri, tmp_path_factory):
    folder = tmp_path_factory.mktemp("narrated")
    photos = [load_photo("coffee"), load_photo("chelsea")]
    for video_id, (start_s, line) in SAID.items():
        audio, _ = narration_track([(start_s, line)], 8.0)
        write_scene_video(folder / f"{video_id}.mp4", photos, [4.0, 4.0], fps=10, audio=audio)
    write_scene_video(folder / "silent.mp4", [load_photo("rocket")], [8.0], fps=10)  # no audio track at all
    write_scene_video(folder / "sale.mp4", photos, [4.0, 4.0], fps=10, captions=[None, SHOWN])  # text, no speech
    write_scene_video(folder / "code.mp4", photos, [4.0, 4.0], fps=10, captions=[None, CODE])
    ingest_stack.start_worker()
    for video_id in [*SAID, "silent", "sale", "code"]:
        ingest_stack.submit(video_id, str(folder / f"{video_id}.mp4"))
    for video_id in [*SAID, "silent", "sale", "code"]:
        assert ingest_stack.wait(video_id, timeout_s=180).state.value == "READY"
    gateway = start_gateway(tmp_path_factory.mktemp("gw"), triton.grpc_url, milvus_uri, ingest_stack.redis_url,
                            collection_prefix=ingest_stack.env["VIDSTRATA_MILVUS_COLLECTION_PREFIX"],
                            request_timeout_s="20", triton_timeout_s="10")
    client = GatewayClient(gateway.address, timeout_s=30)
    yield client
    client.close()
    gateway.stop()


@pytest.mark.parametrize("video_id", list(SAID))
def test_a_paraphrase_of_the_speech_finds_its_video_at_the_spoken_span(searched, video_id):
    hits = searched.search(PARAPHRASES[video_id], top_k=4).hits
    assert hits[0].video_id == video_id, [(h.video_id, h.score, h.why.snippet) for h in hits]
    top = hits[0]
    assert top.why.level == "speech_sentence" and top.levels.HasField("speech_sentence")
    start_s, line = SAID[video_id]
    assert abs(top.why.start_s - start_s) < 0.6 and top.why.end_s > top.why.start_s
    assert set(top.why.snippet.lower().split()) & set(line.lower().strip(".").split())


def test_a_silent_video_is_not_sunk_by_the_speech_it_lacks(searched):
    hits = searched.search("a rocket on the launch pad", top_k=4).hits
    silent = next(h for h in hits if h.video_id == "silent")
    assert not silent.levels.HasField("speech_sentence")
    assert hits[0].video_id == "silent", [(h.video_id, h.score) for h in hits]
    assert silent.why.level == "clip"


def test_get_video_returns_the_timed_transcript_on_request(searched):
    plain = searched.get("baking")
    assert list(plain.transcript) == []
    video = searched.get("baking", include_text=True)
    assert len(video.transcript) == 1 and "oven" in video.transcript[0].text.lower()
    assert abs(video.transcript[0].start_s - SAID["baking"][0]) < 0.6
    assert list(searched.get("silent", include_text=True).transcript) == []


def test_on_screen_text_finds_its_video_at_the_span_it_is_shown(searched):
    hits = searched.search("discounted jogging sneakers", top_k=5).hits
    top = hits[0]
    assert top.video_id == "sale", [(h.video_id, h.score, h.why.level, h.why.snippet) for h in hits]
    assert top.why.level == "screen_text_sentence" and "running shoes" in top.why.snippet
    assert abs(top.why.start_s - 4.0) <= 1.0 and top.why.end_s >= 7.0
    assert not top.levels.HasField("speech_sentence") and top.levels.HasField("screen_text_sentence")
    assert [t.text for t in searched.get("sale", include_text=True).screen_text] == [SHOWN.lower()]


def test_search_by_image_finds_the_video_that_shows_it(searched, tmp_path):
    import io

    from PIL import Image

    photo = io.BytesIO()
    Image.fromarray(load_photo("rocket")).save(photo, format="JPEG")
    hits = searched.search(image=photo.getvalue(), top_k=5).hits
    assert hits[0].video_id == "silent", [(h.video_id, h.score) for h in hits]
    assert hits[0].why.level == "clip" and not hits[0].levels.HasField("speech_sentence")
    from vidstrata.client import GatewayError

    with pytest.raises(GatewayError, match="INVALID_ARGUMENT"):
        searched.search(image=b"GIF89a not really")
    # Images between gRPC's default 4 MiB message cap and the 8 MiB image limit reach the gateway's own checks.
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (1300, 1300, 3), dtype=np.uint8)).save(noise, format="PNG")
    assert 4 * 2**20 < len(noise.getvalue()) < 8 * 2**20
    assert searched.search(image=noise.getvalue(), top_k=1).hits
    with pytest.raises(GatewayError, match="INVALID_ARGUMENT.*limit is 8388608"):
        searched.search(image=b"\x89PNG" + b"\0" * (8 * 2**20))


def test_the_visual_modality_cannot_be_switched_off(searched):
    from vidstrata.client import GatewayError
    from vidstrata.v1 import search_pb2

    request = search_pb2.SubmitVideoRequest(uri="/videos/x.mp4", modalities=search_pb2.Modalities(visual=False))
    with pytest.raises(GatewayError, match="INVALID_ARGUMENT.*visual"):
        searched._call("SubmitVideo", request)


@pytest.mark.xfail(run=False, reason="issue 25, open: through the real stack the lexical level finds no code and scores a paraphrase; the channel is off by default")
@pytest.mark.parametrize("query", ["TX4471", '"TX-4471"'])
def test_a_code_shown_on_screen_is_found_by_its_words_at_the_span_it_is_shown(searched, query):
    hits = searched.search(query, top_k=5).hits
    top = hits[0]
    assert top.video_id == "code", [(h.video_id, h.score, h.why.level, h.why.snippet) for h in hits]
    assert top.levels.HasField("lexical") and top.levels.lexical > 0
    assert not any(h.levels.HasField("lexical") for h in hits[1:])  # no other text holds the code
    lexical = [m for m in top.moments if m.level == "lexical"]
    assert lexical and "4471" in lexical[0].snippet
    assert abs(lexical[0].start_s - 4.0) <= 1.0 and lexical[0].end_s >= 7.0


@pytest.mark.xfail(run=False, reason="issue 25, open: through the real stack the lexical level finds no code and scores a paraphrase; the channel is off by default")
def test_a_paraphrase_gets_no_lexical_level_where_no_word_matches(searched):
    hits = searched.search(PARAPHRASES["cycling"], top_k=6).hits
    cycling = next(h for h in hits if h.video_id == "cycling")
    assert not cycling.levels.HasField("lexical")  # "The boy rides his bicycle along the river.": no word in common
    assert not any(h.levels.HasField("lexical") for h in hits if h.video_id in ("code", "sale", "silent"))
