"""Random inputs of the exported graphs, for their parity checks: ONNX against torch (export.onnx_export) and
TensorRT plans against ONNX Runtime (export.tensorrt) draw the same batches. numpy only, so the plan path needs no
torch."""

from __future__ import annotations

import numpy as np

from vidstrata.spec.contract import FRAME_INPUTS, TEXT_NET_INPUTS
from vidstrata.spec.manifest import Manifest


def random_text_inputs(manifest: Manifest, batch: int, rng: np.random.Generator,
                       length_fraction: float = 1.0) -> dict[str, np.ndarray]:
    """Token batches of a checkpoint's text graph (`random_token_inputs` with its vocabulary and limits)."""
    pre = manifest.preprocessing
    return random_token_inputs(manifest.backbone_config["text"]["vocab_size"], pre.max_tokens, pre.max_phrases,
                               batch, rng, length_fraction)


def random_token_inputs(vocab: int, max_tokens: int, max_phrases: int, batch: int, rng: np.random.Generator,
                        length_fraction: float = 1.0) -> dict[str, np.ndarray]:
    """Token batches ([batch, L] int64 ids, mask, phrase ids; L = max_tokens * length_fraction, at least 4) with
    varied real lengths and phrase layouts."""
    length = max(4, int(max_tokens * length_fraction))
    ids = rng.integers(5, vocab, size=(batch, length), dtype=np.int64)
    mask = np.zeros((batch, length), dtype=np.int64)
    phrase_ids = np.full((batch, length), -1, dtype=np.int64)
    for row in range(batch):
        n = int(rng.integers(3, length + 1))
        mask[row, :n] = 1
        cuts = np.sort(rng.integers(1, n - 1, size=int(rng.integers(0, max_phrases))))
        phrase_ids[row, 1 : n - 1] = np.minimum(np.searchsorted(cuts, np.arange(1, n - 1), side="right"), max_phrases - 1)
    return dict(zip(TEXT_NET_INPUTS, (ids, mask, phrase_ids), strict=True))


def random_frame_inputs(manifest: Manifest, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Frame batches: [batch, S, S, 3] uint8 RGB of the encoder's input size S."""
    size = manifest.preprocessing.image_size
    return {FRAME_INPUTS[0]: rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)}
