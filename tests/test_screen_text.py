"""On-screen text (OCR) on real parts: captions rendered into a PyAV video, frames picked by the worker's stage,
read by the PP-OCRv4 models in the real tritonserver, normalised and merged into timed spans."""

from __future__ import annotations

import pytest

from bench.synthetic import write_scene_video
from inference.screen_text import TritonScreenText
from spec.screen_text import ScreenTextSpan, Sighting, merge_sightings, normalize_text
from tests.photos import load_photo
from workers.screen_text import pick_frames, read_screen_text

CAPTIONS = [None, "Summer sale: 40% off all running shoes", "Summer sale: 40% off all running shoes", "Free delivery"]
PHOTOS = ["coffee", "rocket", "chelsea", "astronaut"]


@pytest.fixture(scope="module")
def captioned(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("ocr") / "captioned.mp4"
    spans = write_scene_video(path, [load_photo(p) for p in PHOTOS], [3.0] * 4, fps=10, captions=CAPTIONS)
    return path, spans


def test_normalize_text():
    assert normalize_text("  Summer\u00a0SALE!!!!   40%  ") == "summer sale! 40%"
    assert normalize_text("ﬁnal") == "final"  # NFKC
    assert normalize_text(" |.. ") == ""  # OCR noise with no letter or digit
    assert normalize_text("Sooo gooood") == "so god"  # runs of 3+ equal characters cut to one (a pair stays)


def test_merge_sightings_joins_repeats_into_spans():
    sightings = [Sighting(0, 2, ()), Sighting(2, 4, ("sale", "40% off")), Sighting(4, 6, ("sale", "40% off")),
                 Sighting(6, 8, ()), Sighting(8, 9, ("sale", "40% off")), Sighting(9, 12, ("free delivery",))]
    assert merge_sightings(sightings) == [ScreenTextSpan(2, 6, "sale 40% off"), ScreenTextSpan(8, 9, "sale 40% off"),
                                          ScreenTextSpan(9, 12, "free delivery")]


def test_frames_are_picked_on_picture_changes_within_the_cap(captioned):
    path, spans = captioned
    picked = [t for t, _ in pick_frames(path, 2.0, 60, 0.12, 640, 3600.0)]
    for start, end in spans:  # at least one read frame per scene
        assert any(start - 0.01 <= t < end for t in picked), (picked, spans)
    assert len(picked) <= 8  # changes only, not every sampled frame
    capped = [t for t, _ in pick_frames(path, 2.0, 6, 0.12, 640, 3600.0)]  # 6 a minute: 10 s apart at least
    assert capped[0] == 0.0 and all(b - a >= 10 - 1e-6 for a, b in zip(capped, capped[1:]))


@pytest.mark.e2e
def test_triton_reads_the_captions_into_timed_spans(triton, captioned):
    path, spans = captioned
    reader = TritonScreenText(triton.grpc_url)
    try:
        found = read_screen_text(path, reader, 2.0, 60, 0.12, 960, 3600.0)
    finally:
        reader.close()
    texts = [t.text for t in found]
    assert any("summer sale" in t and "running shoes" in t for t in texts), found
    assert any("free delivery" in t for t in texts), found
    sale = next(t for t in found if "summer sale" in t.text)
    # shown over scenes 1 and 2 (the same caption over two photos): one merged span, not two
    assert abs(sale.start_s - spans[1][0]) <= 0.6 and abs(sale.end_s - spans[2][1]) <= 0.6, (sale, spans)
    assert not any("summer" in t.text for t in found if t.start_s < spans[1][0] - 0.6)
