"""The CLIP path: a Hugging Face CLIP folder given as a file path exports and serves like the default."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vidstrata.spec.manifest import Manifest
from vidstrata.export.pipeline import export_checkpoint
from vidstrata.inference.factory import open_encoder

WORDS = "a photo of the cat dog red blue circle square moves left right then appears rocket launch sky".split()


def write_random_clip(folder: Path) -> Path:
    """A small random-weight CLIP saved the way Hugging Face saves real ones, with a trained BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<pad>", "<unk>", "<|startoftext|>", "<|endoftext|>"]
    tokenizer.train_from_iterator([" ".join(WORDS)] * 10, trainers.BpeTrainer(vocab_size=120, special_tokens=specials))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 2), ("<|endoftext|>", 3)])
    folder.mkdir(parents=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = CLIPConfig(
        text_config=dict(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, pad_token_id=0, bos_token_id=2, eos_token_id=3),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=24,
    )
    CLIPModel(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"crop_size": {"height": 32, "width": 32}, "image_mean": [0.48, 0.46, 0.41], "image_std": [0.27, 0.26, 0.28]}))
    return folder


@pytest.fixture(scope="module")
def clip_repository(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clip")
    out = root / "repo"
    export_checkpoint(write_random_clip(root / "hf-clip"), "python", out)
    return out


def test_clip_checkpoint_exports_with_parity_and_its_own_preprocessing(clip_repository):
    manifest = Manifest.load(clip_repository)
    assert manifest.backbone == "hf-clip" and manifest.dim == 24
    assert manifest.preprocessing.image_size == 32 and manifest.preprocessing.max_tokens == 16
    assert manifest.preprocessing.mean == pytest.approx((0.48, 0.46, 0.41))


def test_clip_encoder_gives_multi_level_unit_vectors(clip_repository):
    # The repository carries the tokenizer and manifest it was built from: enough to encode in-process.
    encoder = open_encoder(repository=clip_repository)
    text = encoder.encode_text(["a red circle moves left, then a blue square appears"])
    assert text.sentence.shape == (1, 24) and text.phrase_mask[0].sum() == 2
    np.testing.assert_allclose(np.linalg.norm(text.sentence, axis=-1), 1.0, atol=1e-5)
    frames = encoder.encode_frames(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    assert frames.shape == (2, 24)
