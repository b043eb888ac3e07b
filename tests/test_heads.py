"""Heads: each starts as the identity of the parameter-free path, and the video head exports with dynamic shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidstrata.spec.aggregation import aggregate_video
from vidstrata.spec.manifest import HeadConfig
from vidstrata.encoders.heads import TextHead, VideoHeadNet, parameter_free_video, segment_pool
from vidstrata.encoders.model import build_nets
from vidstrata.encoders.train import clip_layout
from vidstrata.export.onnx_export import export_video_head, random_video_inputs

DIM = 16


def _video(rng: np.random.Generator, scenes: int = 3, per_scene: int = 6) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit frame vectors with clear scene changes, timestamps at 2 fps, and the duration."""
    centres = rng.normal(size=(scenes, DIM))
    frames = np.repeat(centres, per_scene, axis=0) + 0.05 * rng.normal(size=(scenes * per_scene, DIM))
    frames /= np.linalg.norm(frames, axis=1, keepdims=True)
    times = np.arange(len(frames)) / 2.0
    return frames.astype(np.float32), times, len(frames) / 2.0


def test_untrained_video_head_is_aggregate_video():
    rng = np.random.default_rng(0)
    videos = [_video(rng, 3, 6), _video(rng, 2, 5)]
    clip_ids, clip_mask = clip_layout([v[0] for v in videos], [v[1] for v in videos], [v[2] for v in videos])
    frames = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(v[0]) for v in videos], batch_first=True)
    frame_mask = (clip_ids >= 0).float()
    head = VideoHeadNet(DIM, HeadConfig(attention_heads=2)).eval()
    with torch.no_grad():
        _, clips, video = head(frames, frame_mask, clip_ids, clip_mask)
        _, free_clips, free_video = parameter_free_video(frames, frame_mask, clip_ids, clip_mask)
    for row, (vectors, times, duration) in enumerate(videos):
        expected = aggregate_video(vectors, times, duration)
        assert len(expected.clips) == int(clip_mask[row].sum()) > 1
        for c, clip in enumerate(expected.clips):
            np.testing.assert_allclose(clips[row, c].numpy(), clip.vector, atol=1e-5)
            np.testing.assert_allclose(free_clips[row, c].numpy(), clip.vector, atol=1e-5)
        np.testing.assert_allclose(video[row].numpy(), expected.vector, atol=1e-5)
        np.testing.assert_allclose(free_video[row].numpy(), expected.vector, atol=1e-5)
        assert float(clips[row, len(expected.clips):].abs().sum()) == 0.0  # padded clip slots are zero


def test_untrained_text_head_is_the_mean_of_each_phrase():
    torch.manual_seed(0)
    states = torch.randn(2, 7, DIM)
    sentence = states.mean(1)
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    phrase_ids = torch.tensor([[-1, 0, 0, 1, 1, 1, -1], [-1, 0, 0, 0, -1, -1, -1]])
    slots = torch.arange(4)
    out_sentence, phrases, phrase_mask, words = TextHead(DIM, HeadConfig()).eval()(states, sentence, mask, phrase_ids, slots)
    means, expected_mask = segment_pool(states, phrase_ids, slots)
    assert phrase_mask.tolist() == expected_mask.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0]]
    torch.testing.assert_close(phrases, torch.nn.functional.normalize(means, dim=-1))
    torch.testing.assert_close(phrases[0, 1], torch.nn.functional.normalize(states[0, 3:6].mean(0), dim=0))
    torch.testing.assert_close(out_sentence, torch.nn.functional.normalize(sentence, dim=-1))
    assert float(words[1, 5:].abs().sum()) == 0.0


def test_learned_pooling_weights_the_states_by_their_scores():
    states = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    ids = torch.tensor([[0, 0, -1]])
    logits = torch.tensor([[float(np.log(3.0)), 0.0, 100.0]])  # weights 3/4 and 1/4; position 2 is in no segment
    pooled, mask = segment_pool(states, ids, torch.arange(2), logits)
    torch.testing.assert_close(pooled[0, 0], torch.tensor([0.75, 0.25]))
    assert pooled[0, 1].tolist() == [0.0, 0.0] and mask.tolist() == [[1.0, 0.0]]


def test_minilm_last_blocks_split_off_for_training_give_the_same_outputs(default_checkpoint):
    from vidstrata.encoders.factory import load_checkpoint
    from vidstrata.export.onnx_export import random_text_inputs

    base = load_checkpoint(default_checkpoint)
    inputs = {k: torch.from_numpy(v) for k, v in random_text_inputs(base, 3, np.random.default_rng(0), 0.5).items()}
    with torch.no_grad():
        expected = base.text(*inputs.values())
        for unfrozen in (0, 2):
            base.text.unfrozen = unfrozen
            hidden = base.text.backbone.trunk(inputs["input_ids"], inputs["attention_mask"], unfrozen)
            for e, a in zip(expected, base.text.from_trunk(hidden, inputs["attention_mask"], inputs["phrase_ids"]), strict=True):
                torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)


def test_heads_attach_to_the_nets_the_manifest_describes(default_checkpoint):
    from vidstrata.spec.manifest import Manifest

    manifest = Manifest.load(default_checkpoint)
    with_video = build_nets(manifest.model_copy(update={"heads": HeadConfig()}))
    without = build_nets(manifest.model_copy(update={"heads": HeadConfig(video_head=False)}))
    assert with_video.video is not None and without.video is None
    assert without.text.head is not None and without.frames.head is not None
    assert "video.clip_pool.score.weight" in with_video.modules().state_dict()


def test_video_head_exports_with_dynamic_batch_frames_and_clips(tmp_path):
    import onnxruntime as ort

    class Pair:  # what export_video_head and random_video_inputs read
        manifest = type("M", (), {"dim": DIM})()
        video = VideoHeadNet(DIM, HeadConfig(attention_heads=2, attention_layers=2)).eval()

    torch.manual_seed(1)
    with torch.no_grad():
        for p in Pair.video.parameters():
            p.add_(0.1 * torch.randn_like(p))  # a trained head, not the identity
    session = ort.InferenceSession(str(export_video_head(Pair, tmp_path / "video.onnx")), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    for batch, fraction in ((1, 1.0), (3, 0.25), (5, 0.6)):
        inputs = random_video_inputs(Pair, batch, rng, fraction)
        with torch.no_grad():
            expected = Pair.video(*(torch.from_numpy(a) for a in inputs.values()))
        for e, a in zip(expected, session.run(None, inputs), strict=True):
            assert a.shape == e.shape
            np.testing.assert_allclose(a, e.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="no video head"):
        Pair.video = None
        export_video_head(Pair, tmp_path / "none.onnx")
