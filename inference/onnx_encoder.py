"""In-process ONNX Runtime encoder: the same graphs Triton serves, without a server."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from encoders.checkpoint import Manifest
from inference.encoder import EncoderInfo, EncoderInputError, TextVectors, check_frames
from inference.preprocess import TextTokenizer


class OnnxEncoder:
    """Runs the exported text and frame graphs with the checkpoint's tokenizer."""

    def __init__(self, checkpoint: Path, text_onnx: Path, frames_onnx: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        self.manifest = Manifest.load(checkpoint)
        pre = self.manifest.preprocessing
        self.tokenizer = TextTokenizer(checkpoint / pre.tokenizer, pre.max_tokens, pre.max_phrases, pre.max_text_bytes)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        self.text = ort.InferenceSession(str(text_onnx), options, providers=providers)
        self.frames = ort.InferenceSession(str(frames_onnx), options, providers=providers)

    def info(self) -> EncoderInfo:
        pre = self.manifest.preprocessing
        return EncoderInfo(dim=self.manifest.dim, image_size=pre.image_size, max_phrases=pre.max_phrases)

    def encode_text(self, texts: list[str], timeout_s: float | None = None) -> TextVectors:
        try:
            tokens = self.tokenizer(texts)
        except ValueError as exc:
            raise EncoderInputError(str(exc)) from exc
        sentence, phrases, mask, token_vectors = self.text.run(None, {
            "input_ids": tokens.input_ids, "attention_mask": tokens.attention_mask, "phrase_ids": tokens.phrase_ids,
        })
        return TextVectors(sentence, phrases, mask > 0, token_vectors)

    def encode_frames(self, frames: np.ndarray, timeout_s: float | None = None) -> np.ndarray:
        check_frames(frames, self.manifest.preprocessing.image_size)
        return self.frames.run(None, {"frames": frames})[0]

    def ready(self) -> bool:
        return True
