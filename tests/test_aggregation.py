"""Frames -> clips -> video: cuts follow scene changes, static videos stay whole, long ones split."""

import numpy as np
import pytest

from vidstrata.spec.aggregation import SegmentationParams, aggregate_video


def scenes(lengths: list[int], dim: int = 16, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(lengths), dim))
    return np.concatenate([c + noise * rng.normal(size=(n, dim)) for c, n in zip(centres, lengths)])


def test_cuts_fall_on_scene_changes():
    frames = scenes([6, 10, 4, 8])
    times = np.arange(len(frames)) * 0.5
    result = aggregate_video(frames, times, duration_s=len(frames) * 0.5)
    assert [(c.start_s, c.end_s) for c in result.clips] == [(0.0, 3.0), (3.0, 8.0), (8.0, 10.0), (10.0, 14.0)]
    assert [(c.start_index, c.end_index) for c in result.clips] == [(0, 6), (6, 16), (16, 20), (20, 28)]


def test_vectors_are_unit_norm_and_video_weighs_clips_equally():
    frames = scenes([20, 4])
    result = aggregate_video(frames, np.arange(24) * 0.5, 12.0)
    for vector in [result.vector] + [c.vector for c in result.clips]:
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    expected = result.clips[0].vector + result.clips[1].vector
    np.testing.assert_allclose(result.vector, expected / np.linalg.norm(expected), atol=1e-5)


def test_static_video_is_one_clip():
    frames = scenes([40], noise=0.001)
    result = aggregate_video(frames, np.arange(40) * 0.5, 20.0)
    assert len(result.clips) == 1 and result.clips[0].end_s == 20.0


def test_long_clips_are_split_and_min_length_holds():
    frames = scenes([200], noise=0.001)
    params = SegmentationParams(max_clip_s=30.0)
    result = aggregate_video(frames, np.arange(200) * 0.5, 100.0, params)
    assert len(result.clips) == 4
    assert result.clips[0].start_s == 0.0 and result.clips[-1].end_s == 100.0
    flicker = scenes([3, 1, 3], seed=3)  # a one-frame flash shorter than min_clip_s
    short = aggregate_video(flicker, np.arange(7) * 0.25, 1.75, SegmentationParams(min_clip_s=1.0))
    assert all(c.end_s - c.start_s >= 0.5 for c in short.clips)


def test_single_frame_and_bad_input():
    one = aggregate_video(np.ones((1, 4)), np.array([0.0]), 0.5)
    assert [(c.start_s, c.end_s) for c in one.clips] == [(0.0, 0.5)]
    with pytest.raises(ValueError, match="at least one"):
        aggregate_video(np.zeros((0, 4)), np.zeros(0), 1.0)
    with pytest.raises(ValueError, match="timestamps"):
        aggregate_video(np.ones((3, 4)), np.zeros(2), 1.0)


def test_a_sparsely_sampled_scene_between_dense_ones_stays_one_clip():
    """Variable frame rate: 6 samples over 3 s, 4 over 4 s (1 fps), 6 over 3 s; segmentation works in time."""
    frames = scenes([6, 4, 6], noise=0.1, seed=3)
    times = np.concatenate([np.arange(6) * 0.5, 3.0 + np.arange(4), 7.0 + np.arange(6) * 0.5])
    result = aggregate_video(frames, times, duration_s=10.0)
    assert [(c.start_s, c.end_s) for c in result.clips] == [(0.0, 3.0), (3.0, 7.0), (7.0, 10.0)]


def test_long_clips_are_split_in_even_pieces_of_time():
    times = np.concatenate([np.arange(0, 30, 0.5), 30 + np.arange(30)])  # 30 s dense, then 30 s at 1 fps
    result = aggregate_video(scenes([90], noise=0.0), times, 60.0, SegmentationParams(max_clip_s=30.0))
    assert [(c.start_s, c.end_s) for c in result.clips] == [(0.0, 30.0), (30.0, 60.0)]
