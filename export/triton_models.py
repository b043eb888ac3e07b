"""Server-side Triton python-backend models; each generated `model.py` re-exports one class from here.

Imported only inside Triton's python stub, where `triton_python_backend_utils` exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

from vidstrata.spec.contract import TEXT_IN, TEXT_NET_INPUTS, TEXT_PHRASES
from vidstrata.spec.preprocess import TextTokenizer


def _parameters(args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], Path]:
    config = json.loads(args["model_config"])
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    folder = Path(args["model_repository"]) / args["model_version"]
    return config, params, folder


def _input_error(message: str) -> Any:
    """An INVALID_ARGUMENT error, so clients can tell bad input from a failing server."""
    return pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)


class OnnxRunner:
    """Runs `model.onnx` with ONNX Runtime; one ORT call for all requests the dynamic batcher gathered."""

    def initialize(self, args: dict[str, Any]) -> None:
        import onnxruntime as ort

        config, params, folder = _parameters(args)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        # Spinning worker threads starve Triton's own gRPC and batcher threads on small CPU hosts.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        sizes, feeds = [], {name: [] for name in self.inputs}
        for request in requests:
            for name in self.inputs:
                feeds[name].append(pb_utils.get_input_tensor_by_name(request, name).as_numpy())
            sizes.append(feeds[self.inputs[0]][-1].shape[0])
        try:
            batch = {name: np.concatenate(arrays) for name, arrays in feeds.items()}
            results = self.session.run(self.outputs, batch)
        except Exception as exc:  # noqa: BLE001 - shapes the batcher could not merge, bad values
            return [pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc)))] * len(requests)
        responses, start = [], 0
        for size in sizes:
            tensors = [pb_utils.Tensor(n, np.ascontiguousarray(r[start : start + size])) for n, r in zip(self.outputs, results)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def finalize(self) -> None:
        self.session = None


class TextTokenizerModel:
    """Raw UTF-8 text (BYTES) -> token ids, mask, phrase ids and phrase texts; clients need no tokenizer (nor the
    prefix a model wants before every text: the `prefix` parameter)."""

    def initialize(self, args: dict[str, Any]) -> None:
        _, params, folder = _parameters(args)
        self.tokenizer = TextTokenizer(
            folder / "tokenizer.json",
            max_tokens=int(params["max_tokens"]),
            max_phrases=int(params["max_phrases"]),
            max_text_bytes=int(params["max_text_bytes"]),
            fixed_length=params.get("fixed_length", "1") == "1",
            prefix=params.get("prefix", ""),
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, TEXT_IN).as_numpy().reshape(-1)
            try:
                texts = [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in raw]
                tokens = self.tokenizer(texts)
            except (UnicodeDecodeError, ValueError) as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=_input_error(f"bad text: {exc}")))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                *(pb_utils.Tensor(name, array) for name, array in zip(
                    TEXT_NET_INPUTS, (tokens.input_ids, tokens.attention_mask, tokens.phrase_ids), strict=True)),
                pb_utils.Tensor(TEXT_PHRASES, np.array([[p.encode("utf-8") for p in row] for row in tokens.phrases],
                                                       dtype=np.object_)),
            ]))
        return responses

    def finalize(self) -> None:
        self.tokenizer = None
