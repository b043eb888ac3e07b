"""Training data: datasets in `encoders.dataset`'s JSONL format, cached as frozen backbone outputs.

Any evaluation-style file can train or validate (`vidstrata train` generates a split kept apart from the
evaluation: vidstrata.encoders.training_split). Videos are decoded once and cached as frozen backbone outputs (frame
features, text trunk states), so training runs on a laptop CPU in minutes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidstrata.encoders.dataset import item_texts, read_jsonl
from vidstrata.encoders.model import EncoderPair
from vidstrata.media.video import DECODER_VERSION, VideoReader


# Training never meets the worker's duration limit: its datasets are curated, and a day bounds any of them.
_TRAIN_MAX_DURATION_S = 24 * 3600.0


def decode_frames(path: Path, image_size: int, fps: float, max_frames: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Sampled frames uint8 [N,S,S,3], their timestamps [N] (s) and the duration (s), decoded and sampled
    exactly as ingest does (`vidstrata.media.video.VideoReader`: upright, real time, the same sampling plan).

    Raises vidstrata.media.video.BadVideo for a file ingest would reject.
    """
    with VideoReader(path, image_size, fps, max_frames, _TRAIN_MAX_DURATION_S) as reader:
        batches = list(reader.batches(max_frames))
        duration_s = reader.duration_s
    return (np.concatenate([b.frames for b in batches]), np.concatenate([b.timestamps for b in batches]), duration_s)


@dataclass
class FeatureCache:
    """Frozen backbone outputs of one dataset: per video its frame features, per text its trunk states."""

    video_features: list[torch.Tensor]  # [T_i, F] float16
    timestamps: list[np.ndarray]
    durations: list[float]
    texts: list[str]
    text_states: torch.Tensor  # [N, L, H] float16 (L trimmed to the longest text)
    attention_mask: torch.Tensor  # [N, L]
    phrase_ids: torch.Tensor  # [N, L]
    text_video: torch.Tensor  # [N] index of the video each text describes
    caption: torch.Tensor  # [N] bool: a whole-video caption (else a scene caption)


def _cache_key(pair: EncoderPair, dataset: Path, fps: float, max_frames: int) -> str:
    digest = hashlib.sha256()
    digest.update(dataset.read_bytes())
    digest.update(pair.manifest.model_dump_json(exclude={"heads", "training", "description"}).encode())
    digest.update(f"{fps}:{max_frames}:{pair.text.unfrozen}:{DECODER_VERSION}".encode())
    for tensor in (pair.frames.backbone.state_dict() | pair.text.backbone.state_dict()).values():
        digest.update(tensor.float().sum().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def build_feature_cache(
    pair: EncoderPair, tokenizer_json: Path, dataset: Path, cache_dir: Path, fps: float = 2.0, max_frames: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureCache:
    """Decode and encode every video and text once; later calls with the same inputs load the cached file."""
    from vidstrata.spec.preprocess import TextTokenizer

    path = cache_dir / f"{dataset.stem}-{_cache_key(pair, dataset, fps, max_frames)}.pt"
    if path.is_file():
        return FeatureCache(**torch.load(path, weights_only=False))
    items = read_jsonl(dataset)
    pre = pair.manifest.preprocessing
    features, stamps, durations = [], [], []
    for i, item in enumerate(items):
        frames, times, duration = decode_frames(item.video, pre.image_size, fps, max_frames)
        pixels = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() - pair.frames.mean) / pair.frames.std
        features.append(pair.frames.backbone.features(pixels).half())
        stamps.append(times)
        durations.append(duration)
        if progress:
            progress(i + 1, len(items))
    texts = [(text, index, text in item.captions) for index, item in enumerate(items) for text in item_texts(item)]
    tokens = TextTokenizer(tokenizer_json, pre.max_tokens, pre.max_phrases, pre.max_text_bytes)([t for t, _, _ in texts])
    length = int(tokens.attention_mask.sum(1).max())
    ids, mask, phrase_ids = (torch.from_numpy(a[:, :length]) for a in (tokens.input_ids, tokens.attention_mask, tokens.phrase_ids))
    states = torch.cat([pair.text.backbone.trunk(ids[i : i + 64], mask[i : i + 64], pair.text.unfrozen)
                        for i in range(0, len(ids), 64)]).half()
    cache = FeatureCache(
        features, stamps, durations, [t for t, _, _ in texts], states, mask, phrase_ids,
        torch.tensor([v for _, v, _ in texts]), torch.tensor([c for _, _, c in texts]),
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save(vars(cache), path)
    return cache
