"""The speech stage of ingest: audio track -> voiced windows -> Triton ASR -> timed transcript segments.

The audio is demuxed and resampled to 16 kHz mono float by PyAV as a stream, one buffer of at most
`window_s` seconds at a time, so memory stays bounded whatever the video's length. Silero VAD (shipped inside
faster-whisper, run with ONNX Runtime on the CPU, ~1 ms per second of audio) finds the voiced parts of each
buffer; only those go to Triton, trimmed to the voiced span, and a buffer that ends mid-utterance carries that
utterance into the next window instead of cutting it. A video with no audio track, or only silence, yields no
segments. The ASR itself runs in Triton, never here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from vidstrata.inference.speech import AudioWindow, TimedText, TritonSpeech
from vidstrata.media.video import guarded_open_options
from vidstrata.spec.contract import SPEECH_MAX_WINDOW_S, SPEECH_SAMPLE_RATE

# Silero VAD's defaults wait 2 s of silence before closing a chunk; narration pauses are shorter.
VAD_OPTIONS = VadOptions(min_silence_duration_ms=500, speech_pad_ms=200)


def read_audio(path: Path, block_s: float, max_duration_s: float) -> Iterator[tuple[float, np.ndarray]]:
    """(start second, float32 mono 16 kHz samples) blocks of `block_s` seconds of the first audio track.

    Nothing when the file has no audio track. Stops at max_duration_s. The start of the first block is the
    first audio frame's presentation time (relative to the container's start), so spans match the video's.
    """
    block = int(block_s * SPEECH_SAMPLE_RATE)
    # guarded: FFmpeg's probe decodes a first video frame of some files, which a decompression bomb makes huge
    with av.open(str(path), options=guarded_open_options()) as container:
        if not container.streams.audio:
            return
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SPEECH_SAMPLE_RATE)
        base = (container.start_time or 0) / av.time_base
        pending: list[np.ndarray] = []
        filled, start_s, emitted = 0, None, 0

        def frames() -> Iterator[av.AudioFrame]:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    yield from resampler.resample(frame)
            yield from resampler.resample(None)

        for frame in frames():
            if start_s is None:
                start_s = max(float(frame.time or 0.0) - base, 0.0) if frame.time is not None else 0.0
            samples = frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            pending.append(samples)
            filled += len(samples)
            while filled >= block:
                joined = np.concatenate(pending)
                yield start_s + emitted / SPEECH_SAMPLE_RATE, joined[:block]
                emitted += block
                pending, filled = [joined[block:]], filled - block
                if emitted / SPEECH_SAMPLE_RATE >= max_duration_s:
                    return
        if filled:
            yield (start_s or 0.0) + emitted / SPEECH_SAMPLE_RATE, np.concatenate(pending)


def voiced_windows(path: Path, max_duration_s: float, window_s: float = SPEECH_MAX_WINDOW_S) -> Iterator[AudioWindow]:
    """Windows of at most `window_s` seconds that hold speech, each trimmed to its voiced span.

    An utterance still running at a window's end (and starting after its first second) moves whole into the
    next window, so words are not cut at window edges. At most 1.5 windows of samples are held at once.
    """
    limit = int(window_s * SPEECH_SAMPLE_RATE)
    buffer, buffer_start = np.zeros(0, np.float32), 0.0
    for start_s, samples in read_audio(path, window_s / 2, max_duration_s):
        if not len(buffer):
            buffer_start = start_s
        buffer = np.concatenate([buffer, samples])
        while len(buffer) >= limit:
            window, cut = _split(buffer[:limit], buffer_start, final=False)
            if window is not None:
                yield window
            buffer, buffer_start = buffer[cut:], buffer_start + cut / SPEECH_SAMPLE_RATE
    if len(buffer):
        window, _ = _split(buffer, buffer_start, final=True)
        if window is not None:
            yield window


def _split(buffer: np.ndarray, start_s: float, final: bool) -> tuple[AudioWindow | None, int]:
    """The voiced window of `buffer` (None if silent) and the sample where the next window starts."""
    chunks = get_speech_timestamps(buffer, VAD_OPTIONS, sampling_rate=SPEECH_SAMPLE_RATE)
    cut = len(buffer)
    unfinished = chunks and chunks[-1]["end"] >= len(buffer) - SPEECH_SAMPLE_RATE // 10
    if not final and unfinished and chunks[-1]["start"] >= SPEECH_SAMPLE_RATE:
        cut = chunks[-1]["start"]
        chunks = chunks[:-1]
    if not chunks:
        return None, cut
    first, end = chunks[0]["start"], chunks[-1]["end"]
    return AudioWindow(start_s + first / SPEECH_SAMPLE_RATE, buffer[first:end].copy()), cut


def transcribe_video(path: Path, speech: TritonSpeech, max_duration_s: float, batch_windows: int = 8) -> list[TimedText]:
    """The timed transcript of a video's first audio track; empty when it has no audio or only silence."""
    segments: list[TimedText] = []
    batch: list[AudioWindow] = []
    for window in voiced_windows(path, max_duration_s):
        batch.append(window)
        if len(batch) == batch_windows:
            segments += speech.transcribe(batch)
            batch = []
    if batch:
        segments += speech.transcribe(batch)
    return segments
