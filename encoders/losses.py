"""Hierarchical contrastive losses: video-sentence, clip-phrase and frame-word, each a [videos x texts] score matrix.

Score matrices follow one convention: `scores[i, j]` is the similarity of video i and text j, and the
diagonal holds the positive pairs. `exclude` [B,B] marks off-diagonal pairs that also match (the same
caption drawn for two videos): they are neither positives nor negatives. The levels:

- video-sentence: dot product of the video and sentence vectors;
- clip-phrase: for each phrase the best clip, then the mean over phrases (late interaction, as served);
- frame-word: for each word the best frame, then the mean over words (late interaction).

On each matrix: symmetric InfoNCE; HCMI's marginal sample enhancement (the hardest in-batch negative
must trail the positive by a margin); TPM-CL's NegNCE (negatives that outscore their positive are
penalised once more); and for video-sentence, negatives from HiT's momentum queue.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_FLOOR = -1e4  # a score no real cosine reaches: masks max-pools without NaNs


def video_sentence_scores(video: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
    """[Bv,D] x [Bt,D] -> [Bv,Bt]."""
    return video @ sentence.T


def late_interaction_scores(
    video_items: torch.Tensor, video_mask: torch.Tensor, text_items: torch.Tensor, text_mask: torch.Tensor
) -> torch.Tensor:
    """For each text item the best video item, then the mean over the text's items: [Bv,V,D] x [Bt,W,D] -> [Bv,Bt].

    Clip-phrase takes clips and phrases, frame-word takes frames and words.
    """
    sims = torch.einsum("bvd,twd->btvw", video_items, text_items)
    sims = sims + (1.0 - video_mask)[:, None, :, None] * _FLOOR
    best = sims.amax(2)  # [Bv,Bt,W]
    weights = text_mask.unsqueeze(0).to(best.dtype)
    return (best * weights).sum(-1) / weights.sum(-1).clamp(min=1.0)


def _negatives_mask(scores: torch.Tensor, exclude: torch.Tensor | None) -> torch.Tensor:
    """True where (i, j) is a negative pair."""
    eye = torch.eye(scores.shape[0], scores.shape[1], dtype=torch.bool, device=scores.device)
    return ~eye if exclude is None else ~(eye | exclude)


def info_nce(
    scores: torch.Tensor,
    temperature: float,
    exclude: torch.Tensor | None = None,
    extra_texts: torch.Tensor | None = None,
    extra_videos: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE over a square score matrix; the mean of video->text and text->video cross-entropies.

    extra_texts [B,K]: scores of video i against K more negative texts (a momentum queue), and
    extra_videos [B,K] of text j against K more negative videos; -inf entries are ignored.
    """
    logits = scores if exclude is None else scores.masked_fill(exclude & _negatives_mask(scores, None), float("-inf"))
    logits = logits / temperature
    targets = torch.arange(scores.shape[0], device=scores.device)
    rows, cols = logits, logits.T
    if extra_texts is not None:
        rows = torch.cat([rows, extra_texts / temperature], dim=1)
    if extra_videos is not None:
        cols = torch.cat([cols, extra_videos / temperature], dim=1)
    return (F.cross_entropy(rows, targets) + F.cross_entropy(cols, targets)) / 2


def hardest_negative_margin(scores: torch.Tensor, margin: float, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """HCMI's marginal sample enhancement: mean over positives of [margin - s_ii + max_j s_ij]_+, both directions."""
    negative = _negatives_mask(scores, exclude)
    masked = scores.masked_fill(~negative, float("-inf"))
    positive = scores.diagonal()
    per_video = F.relu(margin - positive + masked.amax(1))
    per_text = F.relu(margin - positive + masked.amax(0))
    return (per_video.mean() + per_text.mean()) / 2


def neg_nce_penalty(scores: torch.Tensor, temperature: float, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """TPM-CL's negative-aware term: each negative that outscores its positive adds -log(e^s_ii / (e^s_ii + e^s_ij)).

    Summed over those hard negatives, averaged over the positives and the two directions; NegNCE is
    InfoNCE plus a weight times this.
    """
    negative = _negatives_mask(scores, exclude)
    positive = scores.diagonal()
    by_video = (scores - positive[:, None]) / temperature  # row i: video i against texts j
    by_text = (scores - positive[None, :]) / temperature  # column j: text j against videos i
    hard_video = negative & (by_video > 0)
    hard_text = negative & (by_text > 0)
    loss_video = (F.softplus(by_video) * hard_video).sum() / scores.shape[0]
    loss_text = (F.softplus(by_text) * hard_text).sum() / scores.shape[1]
    return (loss_video + loss_text) / 2


class MomentumQueue:
    """HiT's momentum contrast: the last `size` video and sentence vectors from a momentum copy of the heads.

    They serve as extra negatives at the video-sentence level; entries of a video in the current batch
    are ignored, so a video never counts as its own negative.
    """

    def __init__(self, dim: int, size: int) -> None:
        self.videos = torch.zeros(0, dim)
        self.sentences = torch.zeros(0, dim)
        self.ids = torch.zeros(0, dtype=torch.long)
        self.size = size

    def push(self, videos: torch.Tensor, sentences: torch.Tensor, ids: torch.Tensor) -> None:
        """Enqueue the newest keys (no gradient) and drop the oldest beyond `size`."""
        self.videos = torch.cat([videos.detach(), self.videos])[: self.size]
        self.sentences = torch.cat([sentences.detach(), self.sentences])[: self.size]
        self.ids = torch.cat([ids, self.ids])[: self.size]

    def extra_scores(
        self, videos: torch.Tensor, sentences: torch.Tensor, ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of the batch's videos against queued sentences, and of its sentences against queued videos."""
        same = ids[:, None] == self.ids[None, :]
        extra_texts = (videos @ self.sentences.T).masked_fill(same, float("-inf"))
        extra_videos = (sentences @ self.videos.T).masked_fill(same, float("-inf"))
        return extra_texts, extra_videos
