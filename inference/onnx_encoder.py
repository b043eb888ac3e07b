"""In-process ONNX Runtime encoder: the same graphs Triton serves, without a server."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidstrata.spec.manifest import Manifest, file_digest
from vidstrata.spec.contract import FRAME_ENCODER, FRAME_INPUTS, TEXT_NET, TEXT_NET_INPUTS, TEXT_TOKENIZER, VIDEO_HEAD, VIDEO_HEAD_OUTPUTS
from vidstrata.inference.encoder import EncoderInfo, EncoderInputError, TextVectors, check_frames, video_head_inputs
from vidstrata.spec.preprocess import TextTokenizer


class OnnxEncoder:
    """Runs the exported text and frame graphs (and the video head, if given) with the checkpoint's tokenizer."""

    def __init__(
        self, manifest: Manifest, tokenizer_json: Path, text_onnx: Path, frames_onnx: Path, threads: int = 0,
        video_onnx: Path | None = None,
    ) -> None:
        import onnxruntime as ort

        self.manifest = manifest
        pre = self.manifest.preprocessing
        self.tokenizer = TextTokenizer(tokenizer_json, pre.max_tokens, pre.max_phrases, pre.max_text_bytes,
                                       fixed_length=False)
        self.model_version = file_digest(text_onnx)
        self.frame_model_version = file_digest(frames_onnx, *([video_onnx] if video_onnx else []))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        self.text = ort.InferenceSession(str(text_onnx), options, providers=providers)
        self.frames = ort.InferenceSession(str(frames_onnx), options, providers=providers)
        self.video = ort.InferenceSession(str(video_onnx), options, providers=providers) if video_onnx else None

    @classmethod
    def from_repository(cls, repository: Path, threads: int = 0) -> OnnxEncoder:
        """The ONNX graphs of a model repository written by `vidstrata export` (python or onnxruntime target).

        FileNotFoundError names what is missing (a TensorRT-only repository has no ONNX graphs).
        """
        manifest = Manifest.load(repository)
        tokenizer = repository / TEXT_TOKENIZER / "1" / manifest.preprocessing.tokenizer
        graphs = {name: repository / name / "1" / "model.onnx" for name in (TEXT_NET, FRAME_ENCODER, VIDEO_HEAD)}
        for path in (tokenizer, graphs[TEXT_NET], graphs[FRAME_ENCODER]):
            if not path.is_file():
                raise FileNotFoundError(f"{repository} is not an ONNX model repository: {path} is missing")
        video = graphs[VIDEO_HEAD] if graphs[VIDEO_HEAD].is_file() else None
        return cls(manifest, tokenizer, graphs[TEXT_NET], graphs[FRAME_ENCODER], threads, video)

    def info(self) -> EncoderInfo:
        pre = self.manifest.preprocessing
        return EncoderInfo(dim=self.manifest.dim, image_size=pre.image_size, max_phrases=pre.max_phrases,
                           video_head=self.video is not None, model_version=self.model_version,
                           frame_model_version=self.frame_model_version)

    def encode_text(self, texts: list[str], timeout_s: float | None = None) -> TextVectors:
        try:
            tokens = self.tokenizer(texts)
        except ValueError as exc:
            raise EncoderInputError(str(exc)) from exc
        sentence, phrases, mask, token_vectors = self.text.run(None, {
            **dict(zip(TEXT_NET_INPUTS, (tokens.input_ids, tokens.attention_mask, tokens.phrase_ids), strict=True)),
        })
        return TextVectors(sentence, phrases, mask > 0, token_vectors, tokens.phrases)

    def encode_frames(self, frames: np.ndarray, timeout_s: float | None = None) -> np.ndarray:
        check_frames(frames, self.manifest.preprocessing.image_size)
        return self.frames.run(None, {FRAME_INPUTS[0]: frames})[0]

    def encode_video(
        self, frames: np.ndarray, clip_ids: np.ndarray, clip_count: int, timeout_s: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.video is None:
            raise RuntimeError(f"this OnnxEncoder was given no {VIDEO_HEAD} graph (video_onnx)")
        inputs = video_head_inputs(frames, clip_ids, clip_count, self.manifest.dim)
        clips, video = self.video.run(list(VIDEO_HEAD_OUTPUTS[1:]), inputs)
        return clips[0], video[0]

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release: the sessions go with the object."""
