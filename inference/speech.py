"""Client of Triton's `speech_recognizer`: windows of 16 kHz mono PCM in, timed transcript segments out.

Windows go out one request each and several in flight, so Triton's dynamic batcher can decode them together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidstrata.inference.encoder import EncoderInputError
from vidstrata.inference.triton_model import TritonModelClient, as_text
from vidstrata.spec.contract import (
    SPEECH_INPUTS,
    SPEECH_MAX_WINDOW_S,
    SPEECH_OUTPUTS,
    SPEECH_RECOGNIZER,
    SPEECH_SAMPLE_RATE,
)


@dataclass(frozen=True)
class TimedText:
    """One piece of text with its span in seconds of the video's presentation time."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class AudioWindow:
    """Float32 PCM at SPEECH_SAMPLE_RATE, mono, at most SPEECH_MAX_WINDOW_S long, starting offset_s into the video."""

    offset_s: float
    samples: np.ndarray


class TritonSpeech(TritonModelClient):
    """Thread-safe ASR over Triton gRPC; `max_inflight` windows are sent at once."""

    model = SPEECH_RECOGNIZER

    def __init__(self, url: str, timeout_s: float = 60.0, max_inflight: int = 4) -> None:
        super().__init__(url, timeout_s, max_inflight, "asr")

    def _one(self, window: AudioWindow) -> list[TimedText]:
        samples = np.ascontiguousarray(window.samples, dtype=np.float32)[None, :]
        if samples.shape[1] == 0 or samples.shape[1] > SPEECH_MAX_WINDOW_S * SPEECH_SAMPLE_RATE:
            raise EncoderInputError(f"an audio window holds 1..{int(SPEECH_MAX_WINDOW_S * SPEECH_SAMPLE_RATE)} "
                                    f"samples, got {samples.shape[1]}")
        result = self._infer(SPEECH_INPUTS[0], samples, "FP32", SPEECH_OUTPUTS)
        starts, ends, texts = (result.as_numpy(n).reshape(-1) for n in SPEECH_OUTPUTS)
        return [TimedText(window.offset_s + float(s), window.offset_s + float(e), as_text(t))
                for s, e, t in zip(starts, ends, texts, strict=True)]

    def transcribe(self, windows: list[AudioWindow]) -> list[TimedText]:
        """The segments of all windows, in time order; EncoderUnavailable when Triton cannot answer."""
        return [segment for found in self._pool.map(self._one, windows) for segment in found]
