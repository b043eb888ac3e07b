"""Training: a 20-step run lowers the loss, its checkpoint exports with parity and serves through the real Triton.

The run trains heads on a small random-weight CLIP (tests/test_clip.py), so the whole file stays fast;
the heads and the training code are the same for every backbone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vidstrata.media.photos import CAPTIONS
from vidstrata.encoders.training_split import TRAIN_PHOTOS, generate_training_split, prepare_training_data
from vidstrata.encoders.dataset import item_texts, read_jsonl, write_jsonl
from vidstrata.encoders.factory import HEADS_FILE, attach_heads, import_hf_clip, load_checkpoint
from vidstrata.encoders.train import HEADS_FOLDER, RunResult, TrainConfig, selection_score, train
from vidstrata.export.onnx_export import PARITY_TOLERANCE, random_frame_inputs, random_video_inputs
from vidstrata.export.pipeline import export_checkpoint
from vidstrata.inference.encoder import EncoderInputError
from vidstrata.inference.onnx_encoder import OnnxEncoder
from vidstrata.spec.manifest import TOKENIZER_FILE, Manifest
from tests.fixtures.triton import TritonHandle
from tests.test_clip import write_random_clip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, list[dict[str, Any]], Path]:
    root = tmp_path_factory.mktemp("train")
    base = import_hf_clip(write_random_clip(root / "hf-clip"), root / "base")
    config = TrainConfig.model_validate({
        "seed": 0,
        "base": str(base),
        "heads": {"hidden": 32, "attention_heads": 2},
        "data": {"train": str(root / "data" / "train.jsonl"),
                 "val": [str(root / "data" / "val-scenes.jsonl"), str(root / "data" / "val-shapes.jsonl")],
                 "generate": {"seed": 0, "scene_videos": 4, "shape_videos": 4}, "cache_dir": str(root / "cache")},
        "loss": {"margin_weight": 0.5, "negnce_weight": 0.5, "anchor_weight": 1.0, "queue_size": 8},
        "optim": {"steps": 20, "batch_size": 8, "eval_every": 10, "lr": 3e-3},
    })
    with pytest.raises(FileNotFoundError, match="generates it"):  # training itself never generates data
        train(config, root / "run")
    prepare_training_data(config.data)
    entries: list[dict[str, Any]] = []
    return train(config, root / "run", entries.append), entries, base


def test_twenty_steps_lower_the_loss_and_log_every_level(run):
    result, entries, _ = run
    losses = [e["loss"] for e in entries if "loss" in e]
    assert len(losses) == 20
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert {"loss_video_sentence", "loss_clip_phrase", "loss_frame_word", "loss_anchor"} <= set(entries[-1])
    validations = [e for e in entries if "val_r1" in e]
    assert [e["step"] for e in validations] == [0, 10, 20]
    assert set(validations[0]["val_r1"]) == {"val-scenes", "val-shapes"}  # each validation set on its own
    for r1 in validations[0]["val_r1"].values():
        assert set(r1) == {"video_sentence", "clip_phrase", "frame_word", "fused"}
    log = [json.loads(line) for line in (result.checkpoint / "train_log.jsonl").read_text().splitlines()]
    assert log == entries
    training = load_checkpoint(result.checkpoint).manifest.training
    assert training["val_r1_parameter_free"] == result.baseline and training["config"]["seed"] == 0


def test_a_state_is_kept_only_where_every_validation_set_gained():
    base = {"scenes": {"fused": 0.20}, "shapes": {"fused": 0.05}}
    traded = {"scenes": {"fused": 0.10}, "shapes": {"fused": 0.80}}  # a big gain bought with a loss
    both = {"scenes": {"fused": 0.22}, "shapes": {"fused": 0.40}}
    assert selection_score(traded, base) < selection_score(base, base) < selection_score(both, base)


def test_generated_split_is_disjoint_from_the_evaluation(run, tmp_path):
    result, _, _ = run
    data = Path(load_checkpoint(result.checkpoint).manifest.training["config"]["data"]["train"]).parent
    train_items = read_jsonl(data / "train.jsonl")
    val_items = read_jsonl(data / "val-scenes.jsonl") + read_jsonl(data / "val-shapes.jsonl")
    texts = {t for item in train_items + val_items for t in item_texts(item)}
    assert not set(TRAIN_PHOTOS) & set(CAPTIONS)  # no evaluation photo
    assert not texts & set(CAPTIONS.values())  # no evaluation photo caption
    assert not any(" moving " in t or " moves " in t for t in texts)  # the evaluation's shape wording
    assert not {t for i in train_items for t in item_texts(i)} & {t for i in val_items for t in item_texts(i)}
    evaluation = write_jsonl(tmp_path / "eval.jsonl", [train_items[0]])
    with pytest.raises(ValueError, match="shares captions with the evaluation"):
        generate_training_split(tmp_path / "again", 0, 4, 4, [evaluation])


def test_heads_folder_is_small_and_reattaches_to_the_base(run):
    result, _, base = run
    trained = load_checkpoint(result.checkpoint)
    heads = result.checkpoint / HEADS_FOLDER
    assert (heads / HEADS_FILE).stat().st_size < (result.checkpoint / "weights.safetensors").stat().st_size
    attached = attach_heads(load_checkpoint(base), heads)
    for key, value in trained.modules().state_dict().items():
        torch.testing.assert_close(attached.modules().state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match="no heads"):
        attach_heads(load_checkpoint(base), base)


@pytest.fixture(scope="module")
def trained_repository(run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained checkpoint exported by `vidstrata export`'s pipeline."""
    result, _, _ = run
    out = tmp_path_factory.mktemp("trained-repository")
    report = export_checkpoint(result.checkpoint, "python", out)
    assert set(report.parity) == {"text", "frames", "video"}
    assert max(report.parity.values()) <= PARITY_TOLERANCE
    return out


def test_trained_checkpoint_exports_with_parity(trained_repository):
    names = sorted(p.name for p in trained_repository.iterdir() if p.is_dir())
    assert names == ["frame_encoder", "ocr_cls", "ocr_det", "ocr_rec", "screen_text_reader", "speech_recognizer",
                     "text_encoder", "text_encoder_net", "text_tokenizer", "video_head"]


def one_video(pair: Any, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Frame vectors [T,D], the clip of each frame [T] and the clip count of one random video, unpadded."""
    video = random_video_inputs(pair, 1, np.random.default_rng(seed))
    frames = int(video["frame_mask"].sum())
    return video["frames"][0, :frames], video["clip_ids"][0, :frames], video["clip_mask"].shape[1]


@torch.no_grad()
def torch_video_head(pair: Any, frames: np.ndarray, clip_ids: np.ndarray, clips: int) -> tuple[np.ndarray, np.ndarray]:
    """The trained VideoHeadNet's clip vectors [C,D] and video vector [D] for one video."""
    _, clip_vectors, video_vector = pair.video(torch.from_numpy(frames[None]), torch.ones(1, len(frames)),
                                               torch.from_numpy(clip_ids[None]), torch.ones(1, clips))
    return clip_vectors[0].numpy(), video_vector[0].numpy()


def test_in_process_encoder_runs_the_exported_video_head(run, trained_repository):
    result, _, _ = run
    pair = load_checkpoint(result.checkpoint)
    graphs = {name: trained_repository / name / "1" / "model.onnx" for name in ("text_encoder_net", "frame_encoder", "video_head")}
    encoder = OnnxEncoder(Manifest.load(result.checkpoint), result.checkpoint / TOKENIZER_FILE, graphs["text_encoder_net"], graphs["frame_encoder"], video_onnx=graphs["video_head"])
    assert encoder.info().video_head
    frames, clip_ids, clips = one_video(pair, 1)
    assert clips > 1
    for served, expected in zip(encoder.encode_video(frames, clip_ids, clips), torch_video_head(pair, frames, clip_ids, clips), strict=True):
        np.testing.assert_allclose(served, expected, atol=PARITY_TOLERANCE)
    with pytest.raises(EncoderInputError, match="every clip a frame"):
        encoder.encode_video(frames, clip_ids, clips + 1)
    with pytest.raises(EncoderInputError, match="float32"):
        encoder.encode_video(frames.astype(np.float64), clip_ids, clips)


@pytest.fixture(scope="module")
def trained_triton(trained_repository, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonHandle]:
    from vidstrata.stack.triton import TritonPorts

    handle = TritonHandle(None, TritonPorts.free(), trained_repository, tmp_path_factory.mktemp("trained-triton"))  # type: ignore[arg-type]
    handle.start()
    yield handle
    handle.stop()


@pytest.mark.e2e
def test_trained_checkpoint_served_by_triton_gives_the_torch_vectors(run, trained_triton):
    from vidstrata.spec.preprocess import TextTokenizer
    from vidstrata.inference.triton_encoder import TritonEncoder

    result, _, _ = run
    pair = load_checkpoint(result.checkpoint)
    pre = pair.manifest.preprocessing
    texts = ["a red circle, then a blue square", "a photo of the cat"]
    tokens = TextTokenizer(result.checkpoint / pre.tokenizer, pre.max_tokens, pre.max_phrases, pre.max_text_bytes)(texts)
    frames = random_frame_inputs(pair, 3, np.random.default_rng(0))["frames"]
    with torch.no_grad():
        sentence, phrases, _, words = pair.text(*(torch.from_numpy(a) for a in (tokens.input_ids, tokens.attention_mask, tokens.phrase_ids)))
        frame_vectors = pair.frames(torch.from_numpy(frames))
    encoder = TritonEncoder(trained_triton.grpc_url)
    try:
        served = encoder.encode_text(texts)
        np.testing.assert_allclose(served.sentence, sentence.numpy(), atol=1e-5)
        np.testing.assert_allclose(served.phrases, phrases.numpy(), atol=1e-5)
        served_length = served.tokens.shape[1]  # Triton pads to the longest text, torch here to max_tokens
        np.testing.assert_allclose(served.tokens, words.numpy()[:, :served_length], atol=1e-5)
        np.testing.assert_allclose(words.numpy()[:, served_length:], 0.0, atol=1e-7)  # the rest is padding
        np.testing.assert_allclose(encoder.encode_frames(frames), frame_vectors.numpy(), atol=1e-5)
        assert encoder.info().video_head
        for seed in (1, 2):  # videos of different lengths and clip counts
            video = one_video(pair, seed)
            for served_vectors, expected in zip(encoder.encode_video(*video), torch_video_head(pair, *video), strict=True):
                np.testing.assert_allclose(served_vectors, expected, atol=PARITY_TOLERANCE)
        with pytest.raises(EncoderInputError, match="clip id"):
            encoder.encode_video(video[0], video[1] - 1, video[2])
    finally:
        encoder.close()
