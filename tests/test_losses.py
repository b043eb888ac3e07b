"""Every loss term on a toy batch whose value is worked out by hand (temperature 1 keeps the arithmetic plain)."""

from __future__ import annotations

import math

import pytest
import torch

from vidstrata.encoders.losses import (
    MomentumQueue,
    hardest_negative_margin,
    info_nce,
    late_interaction_scores,
    neg_nce_penalty,
    video_sentence_scores,
)

# scores[i, j]: video i against text j; the diagonal holds the positives.
THREE = torch.tensor([[0.5, 0.6, 0.1], [0.2, 0.9, 0.3], [0.4, 0.0, 0.7]])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_info_nce_is_the_mean_of_both_directions():
    scores = torch.tensor([[0.9, 0.1], [0.3, 0.8]])
    # -log(e^a / (e^a + e^b)) = softplus(b - a): rows are video->text, columns text->video.
    rows = softplus(0.1 - 0.9) + softplus(0.3 - 0.8)
    cols = softplus(0.3 - 0.9) + softplus(0.1 - 0.8)
    assert float(info_nce(scores, temperature=1.0)) == pytest.approx((rows / 2 + cols / 2) / 2, abs=1e-6)
    # The temperature divides every score: at 0.5 each gap doubles.
    rows = softplus(-1.6) + softplus(-1.0)
    cols = softplus(-1.2) + softplus(-1.4)
    assert float(info_nce(scores, temperature=0.5)) == pytest.approx((rows + cols) / 4, abs=1e-6)


def test_info_nce_ignores_excluded_pairs():
    exclude = torch.zeros(3, 3, dtype=torch.bool)
    exclude[0, 1] = True  # text 1 also describes video 0: not a negative of either
    e = [[math.exp(v) for v in row] for row in THREE.tolist()]
    rows = [-math.log(e[0][0] / (e[0][0] + e[0][2])),
            -math.log(e[1][1] / sum(e[1])),
            -math.log(e[2][2] / sum(e[2]))]
    cols = [-math.log(e[0][0] / (e[0][0] + e[1][0] + e[2][0])),
            -math.log(e[1][1] / (e[1][1] + e[2][1])),
            -math.log(e[2][2] / (e[0][2] + e[1][2] + e[2][2]))]
    expected = (sum(rows) / 3 + sum(cols) / 3) / 2
    assert float(info_nce(THREE, 1.0, exclude)) == pytest.approx(expected, abs=1e-6)


def test_hardest_negative_margin():
    # Rows (video i, hardest text): [0.2-0.5+0.6]+ = 0.3, [0.2-0.9+0.3]+ = 0, [0.2-0.7+0.4]+ = 0 -> mean 0.1.
    # Columns (text j, hardest video): [0.2-0.5+0.4]+ = 0.1, [0.2-0.9+0.6]+ = 0, [0.2-0.7+0.3]+ = 0 -> 0.1/3.
    assert float(hardest_negative_margin(THREE, margin=0.2)) == pytest.approx((0.1 + 0.1 / 3) / 2, abs=1e-6)
    exclude = torch.zeros(3, 3, dtype=torch.bool)
    exclude[0, 1] = True  # then row 0's hardest is 0.1: [0.2-0.5+0.1]+ = 0; column 1's is 0.0
    assert float(hardest_negative_margin(THREE, 0.2, exclude)) == pytest.approx((0.0 + 0.1 / 3) / 2, abs=1e-6)


def test_neg_nce_penalises_only_negatives_above_their_positive():
    # Only (video 0, text 1) outscores its positive (0.6 > 0.5), by 0.1, in the video->text direction;
    # no video outscores a text's positive. Each direction is averaged over its 3 positives.
    assert float(neg_nce_penalty(THREE, temperature=1.0)) == pytest.approx(softplus(0.1) / 3 / 2, abs=1e-6)
    exclude = torch.zeros(3, 3, dtype=torch.bool)
    exclude[0, 1] = True
    assert float(neg_nce_penalty(THREE, 1.0, exclude)) == 0.0
    assert float(neg_nce_penalty(torch.eye(3), 1.0)) == 0.0


def test_late_interaction_takes_the_best_video_item_per_text_item_then_the_mean():
    clips = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one video, two clips
    phrases = torch.tensor([[[0.6, 0.8], [1.0, 0.0]]])  # one text, two phrases
    both, first = torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    # phrase 0: max(0.6, 0.8) = 0.8; phrase 1: max(1, 0) = 1 -> 0.9
    assert float(late_interaction_scores(clips, both, phrases, both)) == pytest.approx(0.9)
    # without clip 1: 0.6 and 1 -> 0.8; without phrase 1: 0.8 alone
    assert float(late_interaction_scores(clips, first, phrases, both)) == pytest.approx(0.8)
    assert float(late_interaction_scores(clips, both, phrases, first)) == pytest.approx(0.8)
    assert video_sentence_scores(torch.eye(2), torch.tensor([[0.6, 0.8]])).tolist() == [[pytest.approx(0.6)], [pytest.approx(0.8)]]


def test_momentum_queue_adds_negatives_but_never_the_same_video():
    queue = MomentumQueue(dim=2, size=3)
    queue.push(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([7]))
    queue.push(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.6, 0.8]]), torch.tensor([8, 9]))
    queue.push(torch.tensor([[0.6, 0.8]]), torch.tensor([[0.8, 0.6]]), torch.tensor([5]))
    assert queue.ids.tolist() == [5, 8, 9]  # newest first, the oldest (7) dropped
    extra_texts, extra_videos = queue.extra_scores(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([9]))
    assert extra_texts.tolist() == [[pytest.approx(0.8), 1.0, float("-inf")]]
    assert extra_videos.tolist() == [[pytest.approx(0.6), 0.0, float("-inf")]]
    # One pair scoring 0.5, one queued text scoring 0.5 too: video->text is -log(1/2), text->video is 0.
    loss = info_nce(torch.tensor([[0.5]]), 1.0, extra_texts=torch.tensor([[0.5]]), extra_videos=torch.tensor([[float("-inf")]]))
    assert float(loss) == pytest.approx(math.log(2) / 2, abs=1e-6)
