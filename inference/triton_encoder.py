"""`Encoder` over Triton's gRPC API: raw text and uint8 frames in, multi-level vectors out."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from vidstrata.spec.contract import (
    FRAME_ENCODER,
    FRAME_INPUTS,
    FRAME_OUTPUTS,
    MODEL_VERSION_PARAMETER,
    TEXT_ENCODER,
    TEXT_IN,
    TEXT_OUTPUTS,
    TEXT_PHRASES,
    VIDEO_HEAD,
    VIDEO_HEAD_OUTPUTS,
)
from vidstrata.inference.encoder import (
    EncoderInfo,
    EncoderInputError,
    EncoderUnavailable,
    TextVectors,
    check_frames,
    video_head_inputs,
)
from vidstrata.inference.triton_model import infer, time_left

_NOT_FOUND = "StatusCode.NOT_FOUND"  # the repository has no such model


def _version(config: dict) -> str:
    """The MODEL_VERSION_PARAMETER of a model's config (get_model_config as JSON); "" when it has none."""
    return str(config.get("config", {}).get("parameters", {}).get(MODEL_VERSION_PARAMETER, {}).get("string_value", ""))


class TritonEncoder:
    """Thread-safe; frames go out in chunks of `frame_batch`, several in flight so the batcher can merge them."""

    def __init__(self, url: str, timeout_s: float = 10.0, frame_batch: int = 32, max_inflight: int = 2) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.frame_batch = frame_batch
        self._client = grpcclient.InferenceServerClient(url)
        self._pool = ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix="triton")
        self._info: EncoderInfo | None = None

    def info(self) -> EncoderInfo:
        if self._info is None:
            try:
                text = self._client.get_model_metadata(TEXT_ENCODER, as_json=True, client_timeout=self.timeout_s)
                frames = self._client.get_model_metadata(FRAME_ENCODER, as_json=True, client_timeout=self.timeout_s)
                video_head = self._serves(VIDEO_HEAD)
                config = self._client.get_model_config(TEXT_ENCODER, as_json=True, client_timeout=self.timeout_s)
                frame_config = self._client.get_model_config(FRAME_ENCODER, as_json=True, client_timeout=self.timeout_s)
            except InferenceServerException as exc:
                raise EncoderUnavailable(f"Triton at {self.url}: {exc.message()}") from exc
            outputs = {o["name"]: o for o in text["outputs"]}
            if TEXT_PHRASES not in outputs:
                raise EncoderUnavailable(f"{TEXT_ENCODER} at {self.url} has no {TEXT_PHRASES!r} output, so its phrase "
                                         "vectors cannot be labelled; re-export the repository with `vidstrata export`")
            phrases = outputs[TEXT_OUTPUTS[1]]
            size = int(frames["inputs"][0]["shape"][1])
            self._info = EncoderInfo(dim=int(phrases["shape"][-1]), image_size=size,
                                     max_phrases=int(phrases["shape"][1]), video_head=video_head,
                                     model_version=_version(config), frame_model_version=_version(frame_config))
        return self._info

    def _serves(self, model: str) -> bool:
        """Whether the repository has `model`: absent is an answer (False), an unreachable server an error."""
        try:
            self._client.get_model_metadata(model, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            if exc.status() == _NOT_FOUND:
                return False
            raise
        return True

    def encode_text(self, texts: list[str], timeout_s: float | None = None) -> TextVectors:
        if not texts:
            raise EncoderInputError("no texts to encode")
        data = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
        tensor = grpcclient.InferInput(TEXT_IN, list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        outputs = [grpcclient.InferRequestedOutput(name) for name in (*TEXT_OUTPUTS, TEXT_PHRASES)]
        result = infer(self._client, self.url, TEXT_ENCODER, [tensor], timeout_s or self.timeout_s, outputs)
        sentence, phrases, mask, tokens = (result.as_numpy(name) for name in TEXT_OUTPUTS)
        texts_out = [[p.decode("utf-8") for p in row] for row in result.as_numpy(TEXT_PHRASES)]
        return TextVectors(sentence, phrases, mask > 0, tokens, texts_out)

    def _infer_frames(self, chunk: np.ndarray, deadline: float) -> np.ndarray:
        what = f"{FRAME_ENCODER} at {self.url}"
        tensor = grpcclient.InferInput(FRAME_INPUTS[0], list(chunk.shape), "UINT8")
        tensor.set_data_from_numpy(chunk)
        result = infer(self._client, self.url, FRAME_ENCODER, [tensor], time_left(deadline, what))
        return result.as_numpy(FRAME_OUTPUTS[0])

    def encode_frames(self, frames: np.ndarray, timeout_s: float | None = None) -> np.ndarray:
        """Vectors [N, D] of uint8 frames [N, S, S, 3]; all chunks within `timeout_s` (default: the client's):
        each is sent with what is left of it, so a chunk that waited in the pool never outlives its caller."""
        check_frames(frames, self.info().image_size)
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        chunks = [frames[i : i + self.frame_batch] for i in range(0, len(frames), self.frame_batch)]
        return np.concatenate(list(self._pool.map(lambda c: self._infer_frames(c, deadline), chunks)))

    def encode_video(
        self, frames: np.ndarray, clip_ids: np.ndarray, clip_count: int, timeout_s: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        info = self.info()
        if not info.video_head:
            raise RuntimeError(f"Triton at {self.url} serves no {VIDEO_HEAD}: this repository's clip and video "
                               "vectors are the parameter-free ones")
        tensors = []
        for name, array in video_head_inputs(frames, clip_ids, clip_count, info.dim).items():
            tensors.append(grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype)))
            tensors[-1].set_data_from_numpy(array)
        clip_vectors, video_vector = VIDEO_HEAD_OUTPUTS[1:]
        outputs = [grpcclient.InferRequestedOutput(name) for name in (clip_vectors, video_vector)]
        result = infer(self._client, self.url, VIDEO_HEAD, tensors, timeout_s or self.timeout_s, outputs)
        return result.as_numpy(clip_vectors)[0], result.as_numpy(video_vector)[0]

    def ready(self) -> bool:
        try:
            return bool(
                self._client.is_model_ready(TEXT_ENCODER, client_timeout=self.timeout_s)
                and self._client.is_model_ready(FRAME_ENCODER, client_timeout=self.timeout_s)
            )
        except InferenceServerException:
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._client.close()
