"""Decompression bombs (issue 22): a file whose frames are far above max_pixels is refused before any frame is
decoded, from the header's size where it states one, by FFmpeg's own guard where it does not; the peak memory of
a process that opens it stays at the interpreter's."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from bench.faults import write_png_bomb
from vidstrata.media.video import DEFAULT_MAX_PIXELS, memory_bound_bytes
from vidstrata.workers.settings import WorkerSettings

SIDE = 12000
FRAME_BYTES = SIDE * SIDE * 3  # one decoded RGB frame of the bomb: 432 MB

# A child that opens the file as ingest does (VideoReader, all batches) and prints its peak RSS and the reason.
# VmHWM, not getrusage's ru_maxrss: that one keeps the forked parent's size across exec (pytest's, here).
_INGEST = """
import sys
from pathlib import Path
from vidstrata.media.video import BadVideo, VideoReader
reason = ""
if len(sys.argv) > 1:
    try:
        with VideoReader(Path(sys.argv[1]), 224, 2.0, 1800, 3600.0) as reader:
            list(reader.batches(32))
    except BadVideo as exc:
        reason = str(exc)
hwm = [line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:")]
print(int(hwm[0].split()[1]) * 1024)
print(reason)
"""


def _ingest_in_child(path: Path | None) -> tuple[int, str]:
    """(peak RSS in bytes, BadVideo reason) of a fresh interpreter that decodes path (None: only imports)."""
    args = [sys.executable, "-c", _INGEST] + ([str(path)] if path else [])
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=300).stdout.splitlines()
    return int(out[0]), out[1] if len(out) > 1 else ""


@pytest.fixture(scope="module")
def baseline() -> int:
    """The peak RSS of a child that only imports the decoder."""
    return _ingest_in_child(None)[0]


def _default_bound() -> int:
    fields = WorkerSettings.model_fields
    return memory_bound_bytes(DEFAULT_MAX_PIXELS, 224, fields["frame_batch"].default,
                              fields["decode_queue_batches"].default)


def test_a_png_bomb_in_mov_is_refused_from_its_header_before_any_frame_is_decoded(tmp_path, baseline):
    """1.8 MB of MOV, four 12000x12000 PNG frames: FFmpeg's stream probe alone once decoded a 432 MB frame."""
    path = tmp_path / "png_bomb.mov"
    write_png_bomb(path, SIDE, 4)
    assert path.stat().st_size < 4 * 1024**2
    peak, reason = _ingest_in_child(path)
    assert reason == f"frames are 12000x12000 = 144000000 pixels; the limit is {DEFAULT_MAX_PIXELS} pixels"
    assert peak - baseline < FRAME_BYTES / 10, (baseline, peak)  # not one frame decoded
    assert peak < baseline + _default_bound(), (baseline, peak)


def test_a_png_bomb_whose_header_states_no_size_is_refused_by_the_decoder_before_its_frame_is_allocated(
        tmp_path, baseline):
    """Raw concatenated PNGs (png_pipe) state no size: FFmpeg's own max_pixels refuses the first frame."""
    path = tmp_path / "png_bomb.png"
    with av.open(str(path), "w", format="image2pipe") as container:
        stream = container.add_stream("png", rate=Fraction(1))
        stream.width, stream.height, stream.pix_fmt = SIDE, SIDE, "gray"
        packets = list(stream.encode(av.VideoFrame.from_ndarray(np.zeros((SIDE, SIDE), np.uint8), format="gray")))
        for _ in range(3):
            for packet in packets:
                container.mux(packet)
    with av.open(str(path), options={"codec_whitelist": "none"}) as container:  # the header states no size
        assert container.format.name == "png_pipe" and container.streams.video[0].codec_context.width == 0
    peak, reason = _ingest_in_child(path)
    assert peak - baseline < SIDE * SIDE / 4, (baseline, peak)  # not one 144 MB gray frame decoded
    assert peak < baseline + _default_bound(), (baseline, peak)
    assert reason.startswith(f"frames are larger than the limit of {DEFAULT_MAX_PIXELS} pixels"), reason
