"""Trainable multi-level heads (after HCMI): words->phrases->sentence and frames->clips->video.

Every head starts as the identity of the parameter-free path (zero-initialised output layers and
pooling scores), so an untrained head reproduces the parameter-free vectors exactly and training
can only move away from them where the losses ask for it. Attention is written by hand:
`nn.MultiheadAttention` breaks ONNX export with a dynamic batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vidstrata.spec.manifest import HeadConfig

_MASKED = -1e4  # additive score for excluded positions: finite, so an empty segment gives zeros, not NaN


def segment_pool(
    states: torch.Tensor, segment_ids: torch.Tensor, slots: torch.Tensor, logits: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool states [B,L,D] into segments: ids [B,L] name each position's segment (-1: none), `slots` [S] the ids.

    Without `logits` each segment is the mean of its states; with logits [B,L] it is their softmax-weighted
    mean. Returns pooled [B,S,D] (zero for an empty segment) and the segment mask [B,S] (1: non-empty).
    """
    member = (segment_ids.unsqueeze(-1) == slots).to(states.dtype)  # [B,L,S]
    if logits is None:
        weights = member
    else:
        scores = logits.unsqueeze(-1) + (1.0 - member) * _MASKED
        weights = (scores - scores.amax(1, keepdim=True)).exp() * member
    counts = member.sum(1)
    pooled = torch.einsum("bls,bld->bsd", weights, states) / weights.sum(1).clamp(min=1e-12).unsqueeze(-1)
    return pooled, (counts > 0).to(states.dtype)


class ResidualMLP(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear, its last layer zero-initialised: a correction that starts at 0."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class AttentionPool(nn.Module):
    """Learned softmax pooling over segments; zero-initialised scores make it the plain mean."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(
        self, states: torch.Tensor, segment_ids: torch.Tensor, slots: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return segment_pool(states, segment_ids, slots, self.score(states).squeeze(-1))


class TemporalSelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over a video's frames [B,T,D] with a frame mask [B,T]; residual."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention_heads ({heads}) must divide the embedding size ({dim})")
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, frames, dim = x.shape
        q, k, v = (
            t.reshape(batch, frames, self.heads, -1).transpose(1, 2) for t in self.qkv(self.norm(x)).chunk(3, dim=-1)
        )
        scores = q @ k.transpose(-1, -2) * self.scale
        scores = scores + (1.0 - mask)[:, None, None, :] * _MASKED
        mixed = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, frames, dim)
        return x + self.out(mixed)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


class TextHead(nn.Module):
    """Token states [B,L,D] -> refined words, learned phrase pooling, sentence = backbone sentence + pooled phrases."""

    def __init__(self, dim: int, config: HeadConfig) -> None:
        super().__init__()
        self.token = ResidualMLP(dim, dim, config.hidden)
        self.phrase_pool = AttentionPool(dim)
        self.sentence_pool = AttentionPool(dim)
        self.sentence_mix = nn.Parameter(torch.zeros(()))  # weight of the pooled phrases in the sentence
        self.sentence = ResidualMLP(dim, dim, config.hidden)

    def forward(
        self, states: torch.Tensor, sentence: torch.Tensor, attention_mask: torch.Tensor, phrase_ids: torch.Tensor,
        slots: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens = states + self.token(states)
        phrases, phrase_mask = self.phrase_pool(tokens, phrase_ids, slots)
        phrases = _unit(phrases)
        whole = torch.where(phrase_mask > 0, 0, -1).to(phrase_ids.dtype)
        pooled, _ = self.sentence_pool(phrases, whole, slots[:1])
        base = _unit(sentence) + self.sentence_mix * _unit(pooled[:, 0])
        sentence_out = _unit(base + self.sentence(base))
        words = _unit(tokens) * attention_mask.unsqueeze(-1).to(tokens.dtype)
        return sentence_out, phrases * phrase_mask.unsqueeze(-1), phrase_mask, words


class FrameHead(nn.Module):
    """Frame vector = unit(backbone vector) + projection of the backbone's pooled features (richer than the vector)."""

    def __init__(self, feature_dim: int, dim: int, config: HeadConfig) -> None:
        super().__init__()
        self.project = ResidualMLP(feature_dim, dim, config.hidden)

    def forward(self, vector: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return _unit(_unit(vector) + self.project(features))


class VideoHeadNet(nn.Module):
    """One video's frame vectors -> refined frames, clip vectors and the video vector (the `video_head` graph).

    Inputs: frames [B,T,D] (frame_encoder output), frame_mask [B,T] (1: a real frame), clip_ids [B,T]
    (each frame's clip from `aggregate_video`'s segmentation, -1 for padding) and clip_mask [B,C]
    (1: a real clip; its width C sets the number of clip slots). Clip boundaries stay those of the
    parameter-free segmentation, so every clip keeps its start_s/end_s; the head learns what each
    frame contributes (temporal self-attention, then softmax pooling within each clip) and how much
    each clip weighs in the video. Outputs are unit vectors; padded slots are zero.
    """

    def __init__(self, dim: int, config: HeadConfig) -> None:
        super().__init__()
        self.attention = nn.ModuleList(TemporalSelfAttention(dim, config.attention_heads) for _ in range(config.attention_layers))
        self.clip_pool = AttentionPool(dim)
        self.clip = ResidualMLP(dim, dim, config.hidden)
        self.video_pool = AttentionPool(dim)
        self.video = ResidualMLP(dim, dim, config.hidden)

    def forward(
        self, frames: torch.Tensor, frame_mask: torch.Tensor, clip_ids: torch.Tensor, clip_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = frames
        for block in self.attention:
            x = block(x, frame_mask)
        x = _unit(x) * frame_mask.unsqueeze(-1)
        slots = torch.arange(clip_mask.shape[1], device=clip_ids.device)
        clips, _ = self.clip_pool(x, clip_ids, slots)
        clips = _unit(clips)
        clips = _unit(clips + self.clip(clips)) * clip_mask.unsqueeze(-1)
        whole = torch.where(clip_mask > 0, 0, -1).to(clip_ids.dtype)
        video, _ = self.video_pool(clips, whole, slots[:1])
        video = _unit(video[:, 0])
        return x, clips, _unit(video + self.video(video))


def parameter_free_video(
    frames: torch.Tensor, frame_mask: torch.Tensor, clip_ids: torch.Tensor, clip_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What `aggregate_video` computes, in torch and with VideoHeadNet's signature: clip = unit mean of its
    unit frames, video = unit mean of its clips."""
    frames = _unit(frames) * frame_mask.unsqueeze(-1)
    slots = torch.arange(clip_mask.shape[1], device=clip_ids.device)
    clips = _unit(segment_pool(frames, clip_ids, slots)[0]) * clip_mask.unsqueeze(-1)
    whole = torch.where(clip_mask > 0, 0, -1).to(clip_ids.dtype)
    return frames, clips, _unit(segment_pool(clips, whole, slots[:1])[0][:, 0])
