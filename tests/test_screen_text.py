"""On-screen text (OCR) on real parts: captions rendered into a PyAV video, frames picked by the worker's stage,
read by the PP-OCRv4 models in the real tritonserver, normalised and merged into timed spans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.faults import write_video
from vidstrata.media.synthetic import render_caption, write_scene_video
from vidstrata.inference.screen_text import TritonScreenText
from vidstrata.spec.screen_text import LineFilter, ReadLine, ScreenTextSpan, Sighting, merge_sightings, normalize_text
from vidstrata.media.video import VideoSource
from tests.photos import load_photo
from vidstrata.workers.screen_text import pick_frames, read_screen_text
from vidstrata.workers.settings import WorkerSettings

CAPTIONS = [None, "Summer sale: 40% off all running shoes", "Summer sale: 40% off all running shoes", "Free delivery"]
PHOTOS = ["coffee", "rocket", "chelsea", "astronaut"]
PHONE_CAPTION = "Open daily from 7 am"
# A phone filming upright stores its frames turned and states the turn in the display matrix (bench.faults):
# (display rotation in degrees counter-clockwise, mirrored, how the upright picture is stored).
PHONE_TURNS = {
    "rotated_90": (90, False, lambda upright: np.rot90(upright, -1)),
    "rotated_180": (180, False, lambda upright: np.rot90(upright, 2)),
    "rotated_270": (-90, False, lambda upright: np.rot90(upright, 1)),
    "mirrored": (0, True, lambda upright: upright[:, ::-1]),
}
MAX_DURATION_S, MAX_PIXELS = 3600.0, 4096 * 2160
DEFAULTS = WorkerSettings()
LINE_FILTER = LineFilter(DEFAULTS.screen_text_min_confidence, DEFAULTS.screen_text_edge_margin)


@pytest.fixture(scope="module")
def captioned(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("ocr") / "captioned.mp4"
    spans = write_scene_video(path, [load_photo(p) for p in PHOTOS], [3.0] * 4, fps=10, captions=CAPTIONS)
    return path, spans


@pytest.fixture(scope="module")
def phone_upright() -> np.ndarray:
    """What the phone's screen showed: a portrait 360x640 frame with a caption across it."""
    photo = np.asarray(load_photo("coffee"))
    rows = np.linspace(0, photo.shape[0] - 1, 640).astype(int)
    cols = np.linspace(0, photo.shape[1] - 1, 360).astype(int)
    return render_caption(np.ascontiguousarray(photo[rows][:, cols]), PHONE_CAPTION, 360)


@pytest.fixture(scope="module")
def phone_videos(tmp_path_factory: pytest.TempPathFactory, phone_upright: np.ndarray) -> dict[str, Path]:
    """2-s videos of the captioned portrait frame, stored turned or mirrored with a display matrix undoing it."""
    folder = tmp_path_factory.mktemp("phone")
    videos = {}
    for name, (degrees, hflip, store) in PHONE_TURNS.items():
        videos[name] = folder / f"{name}.mp4"
        stored = np.ascontiguousarray(store(phone_upright))
        write_video(videos[name], iter([stored] * 20), 10, rotation=degrees, hflip=hflip)
    return videos


def frames_picked(path: Path, sample_fps: float, max_per_minute: int, max_side: int) -> list[tuple[float, np.ndarray]]:
    with VideoSource(path, MAX_DURATION_S, MAX_PIXELS) as video:
        return list(pick_frames(video, sample_fps, max_per_minute, 0.12, max_side))


def test_normalize_text():
    assert normalize_text("  Summer\u00a0SALE!!!!   40%  ") == "summer sale! 40%"
    assert normalize_text("ﬁnal") == "final"  # NFKC
    assert normalize_text(" |.. ") == ""  # OCR noise with no letter or digit
    assert normalize_text("Sooo gooood") == "so god"  # runs of 3+ equal characters cut to one (a pair stays)


# What the served PP-OCRv4 read in two 320x240 frames of the eval sets (boxes as fractions of the frame): the
# `scenes` photo of a printed page about segmenting coins, 3 s into its pan, and a `narrated` caption. The page's
# lines are read as confidently and are as tall as the caption's; what tells them apart is that the page runs off
# the picture. Joined, the page's lines scored 0.49 against "a collection of old coins", a photo it does not show.
PAGE_LINES = [
    ReadLine("ed segmentation", 0.962, (0.0, 0.05, 0.762, 0.185)),
    ReadLine("ermine markers of the coins and", 0.935, (0.003, 0.277, 0.998, 0.358)),
    ReadLine("se markers arepixelsthatwe can", 0.94, (0.0, 0.375, 0.984, 0.475)),
    ReadLine("seither object or background.", 0.968, (0.0, 0.479, 0.983, 0.575)),
    ReadLine("found at the two extremepartsot", 0.926, (0.0, 0.577, 1.0, 0.679)),
    ReadLine("values:", 0.978, (0.017, 0.685, 0.239, 0.775)),
]
CAPTION_LINES = [
    ReadLine("Open daily from 7 am", 0.989, (0.116, 0.371, 0.853, 0.475)),
    ReadLine("to 6 pm", 0.946, (0.113, 0.519, 0.384, 0.629)),
]


def test_line_filter_keeps_captions_and_drops_a_filmed_page_cut_by_the_frame():
    assert LINE_FILTER.lines(CAPTION_LINES) == ("open daily from 7 am", "to 6 pm")
    assert LINE_FILTER.lines(PAGE_LINES) == ()
    assert LINE_FILTER.lines(PAGE_LINES + CAPTION_LINES) == ("open daily from 7 am", "to 6 pm")
    unsure = ReadLine("0pen dai1y", DEFAULTS.screen_text_min_confidence - 0.01, CAPTION_LINES[0].box)
    assert LINE_FILTER.lines([unsure]) == ()
    everything = LineFilter(min_confidence=0.0, edge_margin=0.0)  # the filter off: every line read, normalised
    assert everything.lines(PAGE_LINES + [unsure]) == tuple(normalize_text(line.text) for line in PAGE_LINES + [unsure])


def test_merge_sightings_joins_repeats_into_spans():
    sightings = [Sighting(0, 2, ()), Sighting(2, 4, ("sale", "40% off")), Sighting(4, 6, ("sale", "40% off")),
                 Sighting(6, 8, ()), Sighting(8, 9, ("sale", "40% off")), Sighting(9, 12, ("free delivery",))]
    assert merge_sightings(sightings) == [ScreenTextSpan(2, 6, "sale 40% off"), ScreenTextSpan(8, 9, "sale 40% off"),
                                          ScreenTextSpan(9, 12, "free delivery")]


def test_frames_are_picked_on_picture_changes_within_the_cap(captioned):
    path, spans = captioned
    picked = [t for t, _ in frames_picked(path, 2.0, 60, 640)]
    for start, end in spans:  # at least one read frame per scene
        assert any(start - 0.01 <= t < end for t in picked), (picked, spans)
    assert len(picked) <= 8  # changes only, not every sampled frame
    capped = [t for t, _ in frames_picked(path, 2.0, 6, 640)]  # 6 a minute: 10 s apart at least
    assert capped[0] == 0.0 and all(b - a >= 10 - 1e-6 for a, b in zip(capped, capped[1:]))


@pytest.mark.e2e
def test_triton_reads_the_captions_into_timed_spans(triton, captioned):
    path, spans = captioned
    reader = TritonScreenText(triton.grpc_url)
    try:
        found = read_screen_text(path, reader, 2.0, 60, 0.12, 960, MAX_DURATION_S, MAX_PIXELS, LINE_FILTER)
    finally:
        reader.close()
    texts = [t.text for t in found]
    assert any("summer sale" in t and "running shoes" in t for t in texts), found
    assert any("free delivery" in t for t in texts), found
    sale = next(t for t in found if "summer sale" in t.text)
    # shown over scenes 1 and 2 (the same caption over two photos): one merged span, not two
    assert abs(sale.start_s - spans[1][0]) <= 0.6 and abs(sale.end_s - spans[2][1]) <= 0.6, (sale, spans)
    assert not any("summer" in t.text for t in found if t.start_s < spans[1][0] - 0.6)


@pytest.mark.parametrize("name", PHONE_TURNS)
def test_frames_for_ocr_are_upright_whatever_the_display_matrix(phone_videos, phone_upright, name):
    ((t, frame),) = frames_picked(phone_videos[name], 2.0, 60, 960)
    assert t == 0.0 and frame.shape == phone_upright.shape  # portrait, as the phone showed it
    error = np.abs(frame.astype(np.int16) - phone_upright).mean()
    assert error < 12, error  # the same picture up to compression, not turned or mirrored


@pytest.mark.e2e
def test_triton_reads_the_caption_of_a_phone_video_filmed_rotated(triton, phone_videos):
    reader = TritonScreenText(triton.grpc_url)
    try:
        found = {name: read_screen_text(path, reader, 2.0, 60, 0.12, 960, MAX_DURATION_S, MAX_PIXELS, LINE_FILTER)
                 for name, path in phone_videos.items()}
    finally:
        reader.close()
    for name, texts in found.items():
        assert [(t.start_s, t.end_s) for t in texts] == [(0.0, 2.0)], (name, texts)
        assert "open daily" in texts[0].text and "7 am" in texts[0].text, (name, texts)
