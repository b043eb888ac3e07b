"""Triton python-backend OCR model: one RGB frame -> its lines of text, read by PP-OCRv4 models in Triton.

`screen_text_reader` does the pre- and post-processing only; the three networks are Triton models of their own
(`ocr_det`, `ocr_cls`, `ocr_rec`: the PP-OCRv4 mobile detector and recogniser and the v2.0 angle classifier,
ONNX files from the `rapidocr-onnxruntime` wheel), called through Triton's business-logic scripting (BLS).
The worker never runs OCR itself. Method: DB text detection (Liao et al., "Real-time Scene Text Detection with
Differentiable Binarization", AAAI 2020), then CRNN-style CTC recognition of each line (PP-OCRv4).

Simplifications, for horizontal rendered text (slides, captions): boxes are axis-aligned (the connected
components of the DB bitmap, each grown by DB's unclip distance area * ratio / perimeter), and the angle
classifier only turns upside-down lines.

Per request (batch dimension 1): `frame` UINT8 [1, H, W, 3] RGB -> `text` BYTES [1, K] in reading order,
`score` FP32 [1, K] (mean CTC confidence), `box` FP32 [1, K, 4] (x0, y0, x1, y1 in pixels of the frame sent).
Every line with text is returned: which lines are worth indexing (confidence, position) is the caller's choice
(spec.screen_text.LineFilter, the worker's settings), not this model's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]
from PIL import Image
from scipy import ndimage

from vidstrata.export.triton_models import _input_error, _parameters
from vidstrata.spec.contract import SCREEN_TEXT_INPUTS, SCREEN_TEXT_MIN_SIDE, SCREEN_TEXT_OUTPUTS

DET_LIMIT_SIDE = 736  # the shorter side is scaled up to at least this (PP-OCR's det default), to a multiple of 32
DET_MAX_SIDE = 1600  # and the longer side down to at most this, to bound det time
DET_THRESHOLD = 0.3  # probability of a text pixel
BOX_THRESHOLD = 0.5  # mean probability inside a box
UNCLIP_RATIO = 1.6
REC_HEIGHT, REC_MIN_WIDTH = 48, 320
CLS_SHAPE = (48, 192)
CLS_THRESHOLD = 0.9
MAX_LINES = 64  # per frame
SMALL_FRAME = 480  # pixels of the shorter side below which a frame is upscaled 2x


def _normalise(image: np.ndarray) -> np.ndarray:
    """HWC uint8 RGB -> CHW float32 BGR in [-1, 1] (the models were trained on BGR)."""
    return ((image[:, :, ::-1].astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def _det_input(frame: np.ndarray) -> tuple[np.ndarray, float, float]:
    height, width = frame.shape[:2]
    scale = max(DET_LIMIT_SIDE / min(height, width), 1.0)
    scale = min(scale, DET_MAX_SIDE / max(height, width))
    new_h, new_w = (max(32, int(round(side * scale / 32)) * 32) for side in (height, width))
    resized = np.asarray(Image.fromarray(frame).resize((new_w, new_h), Image.BILINEAR))
    return _normalise(resized)[None], width / new_w, height / new_h


def boxes_from_probabilities(probs: np.ndarray, scale_x: float, scale_y: float) -> list[tuple[int, int, int, int]]:
    """DB post-processing, axis-aligned: text boxes (x0, y0, x1, y1) in frame pixels from a [H,W] map."""
    bitmap = ndimage.binary_dilation(probs > DET_THRESHOLD, structure=np.ones((2, 2), bool))
    labels, count = ndimage.label(bitmap)
    boxes = []
    for index, found in enumerate(ndimage.find_objects(labels)[:1000], 1):
        if found is None:
            continue
        ys, xs = found
        h, w = ys.stop - ys.start, xs.stop - xs.start
        if min(h, w) < 3 or probs[ys, xs][labels[ys, xs] == index].mean() < BOX_THRESHOLD:
            continue
        grow = h * w * UNCLIP_RATIO / (2 * (h + w))
        x0, x1 = max(xs.start - grow, 0) * scale_x, min(xs.stop + grow, probs.shape[1]) * scale_x
        y0, y1 = max(ys.start - grow, 0) * scale_y, min(ys.stop + grow, probs.shape[0]) * scale_y
        boxes.append((int(x0), int(y0), int(math.ceil(x1)), int(math.ceil(y1))))
    return sorted(boxes, key=lambda b: (round(b[1] / 10), b[0]))[:MAX_LINES]  # top to bottom, left to right


def _resize_height(crop: np.ndarray, height: int, max_width: int) -> np.ndarray:
    width = max(1, min(max_width, int(math.ceil(height * crop.shape[1] / crop.shape[0]))))
    return np.asarray(Image.fromarray(crop).resize((width, height), Image.BILINEAR))


def _padded_batch(crops: list[np.ndarray], height: int, width: int) -> np.ndarray:
    batch = np.zeros((len(crops), 3, height, width), np.float32)
    for i, crop in enumerate(crops):
        resized = _resize_height(crop, height, width)
        batch[i, :, :, : resized.shape[1]] = _normalise(resized)
    return batch


def ctc_greedy(probs: np.ndarray, characters: list[str]) -> list[tuple[str, float]]:
    """Best-path CTC decoding of [N,T,C] probabilities: repeats merged, blanks (index 0) dropped."""
    best, confidence = probs.argmax(axis=2), probs.max(axis=2)
    decoded = []
    for row, conf in zip(best, confidence, strict=True):
        keep = (row != 0) & np.concatenate([[True], row[1:] != row[:-1]])
        text = "".join(characters[i] for i in row[keep] if i < len(characters))
        decoded.append((text, float(conf[keep].mean()) if keep.any() else 0.0))
    return decoded


class ScreenTextReaderModel:
    """Frames in, lines of text out; the networks run as the Triton models named in the config's parameters."""

    def initialize(self, args: dict[str, Any]) -> None:
        _, params, folder = _parameters(args)
        self.det, self.cls, self.rec = params["det_model"], params["cls_model"], params["rec_model"]
        lines = (folder / "characters.txt").read_text(encoding="utf-8").splitlines()
        self.characters = ["<blank>"] + lines + [" "]  # CTC blank first; PP-OCR appends the space

    def _infer(self, model: str, batch: np.ndarray) -> np.ndarray:
        request = pb_utils.InferenceRequest(model_name=model, requested_output_names=["y"],
                                            inputs=[pb_utils.Tensor("x", np.ascontiguousarray(batch))])
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return pb_utils.get_output_tensor_by_name(response, "y").as_numpy()

    def read(self, frame: np.ndarray) -> list[tuple[str, float, tuple[float, float, float, float]]]:
        """(text, confidence, box) of each line of text in one RGB frame, in reading order; boxes in the frame's
        pixels.

        Small frames are read at twice their size: the recogniser drops the spaces of small text otherwise.
        """
        zoom = 2 if min(frame.shape[:2]) < SMALL_FRAME else 1
        if zoom > 1:
            frame = np.asarray(Image.fromarray(frame).resize((frame.shape[1] * zoom, frame.shape[0] * zoom),
                                                             Image.BICUBIC))
        det_input, scale_x, scale_y = _det_input(frame)
        boxes = boxes_from_probabilities(self._infer(self.det, det_input)[0, 0], scale_x, scale_y)
        crops = [frame[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes]
        kept = [(c, b) for c, b in zip(crops, boxes, strict=True) if c.size and c.shape[1] >= c.shape[0] // 2]
        if not kept:
            return []
        crops = [c for c, _ in kept]
        turned = self._infer(self.cls, _padded_batch(crops, *CLS_SHAPE))
        crops = [c[::-1, ::-1] if p[1] > CLS_THRESHOLD else c for c, p in zip(crops, turned, strict=True)]
        width = max(REC_MIN_WIDTH, max(int(math.ceil(REC_HEIGHT * c.shape[1] / c.shape[0])) for c in crops))
        texts = ctc_greedy(self._infer(self.rec, _padded_batch(crops, REC_HEIGHT, width)), self.characters)
        return [(t, s, tuple(v / zoom for v in b)) for (t, s), (_, b) in zip(texts, kept, strict=True) if t.strip()]

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            frame = pb_utils.get_input_tensor_by_name(request, SCREEN_TEXT_INPUTS[0]).as_numpy()
            if frame.ndim != 4 or frame.shape[0] != 1 or frame.shape[3] != 3 or min(frame.shape[1:3]) < SCREEN_TEXT_MIN_SIDE:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=_input_error(
                    f"frame must be UINT8 RGB [1, H>={SCREEN_TEXT_MIN_SIDE}, W>={SCREEN_TEXT_MIN_SIDE}, 3], got {list(frame.shape)}")))
                continue
            try:
                lines = self.read(np.ascontiguousarray(frame[0]))
            except Exception as exc:  # noqa: BLE001 - a failed frame fails its request, never the server
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(
                    f"OCR failed: {exc}")))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                *(pb_utils.Tensor(name, array) for name, array in zip(SCREEN_TEXT_OUTPUTS, (
                    np.array([[t.encode("utf-8") for t, _, _ in lines]], np.object_).reshape(1, -1),
                    np.array([[s for _, s, _ in lines]], np.float32).reshape(1, -1),
                    np.array([[b for _, _, b in lines]], np.float32).reshape(1, -1, 4)), strict=True)),
            ]))
        return responses

    def finalize(self) -> None:
        self.characters = []
