"""`vidstrata train`: hierarchical contrastive training of the multi-level heads on cached backbone outputs.

A run reads one TOML config (see encoders/configs/), seeds everything, caches the backbone outputs
of its train and validation sets, trains the heads (and optionally the last text blocks), and keeps
the state whose worst validation set gained the most R@1 over step 0. Step 0 is the parameter-free path
itself (every head starts as its identity), so the log shows what training gained over it, and a state
that trades one kind of video for another is never kept. The output folder is an ordinary
checkpoint that `vidstrata export` takes unchanged, plus the run's config and log.
"""

from __future__ import annotations

import copy
import json
import random
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field

from vidstrata.spec.aggregation import aggregate_video
from vidstrata.spec.manifest import MANIFEST_FILE, TOKENIZER_FILE, HeadConfig
from vidstrata.encoders.factory import build_default_checkpoint, load_checkpoint, save_checkpoint, save_heads, with_heads
from vidstrata.encoders.heads import parameter_free_video
from vidstrata.encoders.losses import (
    MomentumQueue,
    hardest_negative_margin,
    info_nce,
    late_interaction_scores,
    neg_nce_penalty,
    video_sentence_scores,
)
from vidstrata.encoders.model import EncoderPair
from vidstrata.encoders.train_data import FeatureCache, build_feature_cache

LOSS_LEVELS = ("video_sentence", "clip_phrase", "frame_word")  # the hierarchical contrastive terms (HCMI)
SERVED_LEVELS = ("video_sentence", "clip_phrase")  # what search scores today; they choose the kept state
PARAMETER_FREE_CHECKPOINT = Path("build/checkpoints/parameter-free")
HEADS_FOLDER = "heads"  # inside a run's output: only the trained weights, small enough to commit


class GenerateConfig(BaseModel):
    """How `vidstrata train` generates the train/val split when its files are missing (vidstrata.encoders.training_split)."""

    seed: int = 0
    scene_videos: int = Field(default=160, ge=0)
    shape_videos: int = Field(default=160, ge=0)
    evaluation: list[Path] = Field(default_factory=list, description="eval dataset files whose captions to avoid")


class DataConfig(BaseModel):
    train: Path
    val: list[Path] = Field(min_length=1, description="validation sets, each scored on its own")
    generate: GenerateConfig | None = None
    fps: float = Field(default=2.0, gt=0, description="frames sampled per second, as ingest samples them")
    max_frames: int = Field(default=64, gt=0)
    cache_dir: Path = Path("build/train-cache")


class LossConfig(BaseModel):
    """Which losses run, and their weights; a weight of 0 turns a term off."""

    temperature: float = Field(default=0.05, gt=0)
    levels: dict[str, float] = Field(default_factory=lambda: {"video_sentence": 1.0, "clip_phrase": 1.0, "frame_word": 0.5})
    margin: float = Field(default=0.1, ge=0, description="HCMI marginal sample enhancement: the margin")
    margin_weight: float = Field(default=0.0, ge=0, description="weight of the hardest-negative margin term")
    negnce_weight: float = Field(default=0.0, ge=0, description="TPM-CL NegNCE: weight of the hard-negative term")
    anchor_weight: float = Field(
        default=0.0, ge=0, description="pull frame and sentence vectors toward the parameter-free ones (1 - cosine)")
    queue_size: int = Field(default=0, ge=0, description="HiT momentum queue length (0: off)")
    momentum: float = Field(default=0.99, gt=0, lt=1)


class OptimConfig(BaseModel):
    steps: int = Field(default=600, gt=0)
    batch_size: int = Field(default=32, gt=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    eval_every: int = Field(default=50, gt=0)


class TrainConfig(BaseModel):
    """One training run; every field has a place in the TOML file."""

    seed: int = 0
    base: Path | None = Field(default=None, description="checkpoint to train heads on; default: the built-in one")
    heads: HeadConfig = Field(default_factory=HeadConfig)
    data: DataConfig
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """Read a TOML config; relative paths stay relative to the working directory."""
        try:
            return cls.model_validate(tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML ({exc})") from exc

    def model_post_init(self, context: Any) -> None:
        unknown = set(self.loss.levels) - set(LOSS_LEVELS)
        if unknown:
            raise ValueError(f"unknown loss levels {sorted(unknown)}; choose among {', '.join(LOSS_LEVELS)}")


@dataclass
class RunResult:
    checkpoint: Path
    best_step: int
    baseline: dict[str, dict[str, float]]  # per validation set, R@1 per level of the parameter-free path (step 0)
    best: dict[str, dict[str, float]]  # the same for the kept state


def trainable_parameters(pair: EncoderPair) -> list[torch.nn.Parameter]:
    """The heads and the unfrozen text blocks; the rest of the backbone stays frozen (its outputs are cached)."""
    if pair.text.head is None or pair.frames.head is None:
        raise ValueError("these nets have no heads to train")
    for p in pair.modules().parameters():
        p.requires_grad_(False)
    blocks = pair.text.backbone.bert.encoder.layer if pair.text.unfrozen else []
    modules = [pair.text.head, pair.frames.head, *blocks[len(blocks) - pair.text.unfrozen :]]
    modules += [pair.video] if pair.video is not None else []
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


@dataclass
class Batch:
    """Padded tensors for B videos and B texts (text j describes video j)."""

    features: list[torch.Tensor]
    timestamps: list[np.ndarray]
    durations: list[float]
    states: torch.Tensor
    attention_mask: torch.Tensor
    phrase_ids: torch.Tensor
    video_ids: torch.Tensor
    exclude: torch.Tensor  # [B,B] text j also describes video i (i != j)


def _pad(rows: list[torch.Tensor], value: float = 0.0) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=value)


def make_batch(cache: FeatureCache, videos: list[int], texts: list[int]) -> Batch:
    """Batch the videos with their drawn texts; a text that also describes another video there is excluded."""
    described = [{cache.texts[t] for t in torch.nonzero(cache.text_video == v).flatten().tolist()} for v in videos]
    strings = [cache.texts[t] for t in texts]
    exclude = torch.tensor([[i != j and strings[j] in described[i] for j in range(len(texts))] for i in range(len(videos))])
    return Batch(
        [cache.video_features[v].float() for v in videos], [cache.timestamps[v] for v in videos],
        [cache.durations[v] for v in videos], cache.text_states[texts].float(), cache.attention_mask[texts],
        cache.phrase_ids[texts], torch.tensor(videos), exclude,
    )


def batches(cache: FeatureCache, size: int, rng: random.Random) -> Iterator[Batch]:
    """Endless batches of distinct videos, each with one of its texts drawn at random."""
    by_video: dict[int, list[int]] = {}
    for t, v in enumerate(cache.text_video.tolist()):
        by_video.setdefault(v, []).append(t)
    videos = sorted(by_video)
    size = min(size, len(videos))
    while True:
        chosen = rng.sample(videos, size)
        yield make_batch(cache, chosen, [rng.choice(by_video[v]) for v in chosen])


@dataclass
class Encoded:
    """Every level of B videos and B texts, as the losses and the validation take them."""

    frames: torch.Tensor
    frame_mask: torch.Tensor
    clips: torch.Tensor
    clip_mask: torch.Tensor
    video: torch.Tensor
    sentence: torch.Tensor
    phrases: torch.Tensor
    phrase_mask: torch.Tensor
    words: torch.Tensor
    word_mask: torch.Tensor
    drift: torch.Tensor  # mean 1 - cosine of frame and sentence vectors to their parameter-free ones


def clip_layout(vectors: list[np.ndarray], timestamps: list[np.ndarray], durations: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """clip_ids [B,T] and clip_mask [B,C] from the parameter-free segmentation, exactly as ingest segments."""
    ids, counts = [], []
    for frames, times, duration in zip(vectors, timestamps, durations, strict=True):
        aggregate = aggregate_video(frames, times, duration)
        ids.append(torch.from_numpy(aggregate.clip_ids()))
        counts.append(len(aggregate.clips))
    clip_mask = (torch.arange(max(counts))[None, :] < torch.tensor(counts)[:, None]).float()
    return _pad(ids, -1).long(), clip_mask


def encode_videos(pair: EncoderPair, features: list[torch.Tensor], timestamps: list[np.ndarray],
                  durations: list[float]) -> tuple[torch.Tensor, ...]:
    """(frames, frame_mask, clips, clip_mask, video, frame drift) of a batch of videos from their cached features."""
    lengths = [len(f) for f in features]
    features_flat = torch.cat(features)
    flat = pair.frames.from_features(features_flat)
    drift = 1.0 - (flat * F.normalize(pair.frames.backbone.project(features_flat), dim=-1)).sum(-1).mean()
    per_video = list(flat.split(lengths))
    frames = _pad(per_video)
    frame_mask = (torch.arange(frames.shape[1])[None, :] < torch.tensor(lengths)[:, None]).float()
    clip_ids, clip_mask = clip_layout([v.detach().numpy() for v in per_video], timestamps, durations)
    refined, clips, video = (pair.video or parameter_free_video)(frames, frame_mask, clip_ids, clip_mask)
    return refined, frame_mask, clips, clip_mask, video, drift


def encode(pair: EncoderPair, batch: Batch) -> Encoded:
    frames, frame_mask, clips, clip_mask, video, frame_drift = encode_videos(
        pair, batch.features, batch.timestamps, batch.durations)
    states, base_sentence = pair.text.backbone.tail(batch.states, batch.attention_mask, pair.text.unfrozen)
    sentence, phrases, phrase_mask, words = pair.text.pool(states, base_sentence, batch.attention_mask, batch.phrase_ids)
    sentence_drift = 1.0 - (sentence * F.normalize(base_sentence, dim=-1)).sum(-1).mean()
    word_mask = (batch.phrase_ids >= 0).float()  # real words: not special tokens, not padding
    return Encoded(frames, frame_mask, clips, clip_mask, video, sentence, phrases, phrase_mask, words, word_mask,
                   frame_drift + sentence_drift)


def level_scores(e: Encoded) -> dict[str, torch.Tensor]:
    """[videos x texts] score matrices of the three levels."""
    return {
        "video_sentence": video_sentence_scores(e.video, e.sentence),
        "clip_phrase": late_interaction_scores(e.clips, e.clip_mask, e.phrases, e.phrase_mask),
        "frame_word": late_interaction_scores(e.frames, e.frame_mask, e.words, e.word_mask),
    }


def compute_losses(
    e: Encoded, config: LossConfig, exclude: torch.Tensor, queue_scores: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Per level: InfoNCE (+ NegNCE term, + margin term); the queue adds negatives at video-sentence.

    The anchor term keeps vectors near the parameter-free ones: a head trained on few photos must not
    overwrite what the pretrained backbone knows of photos it never saw.
    """
    scores = level_scores(e)
    losses = {"anchor": config.anchor_weight * e.drift} if config.anchor_weight else {}
    for level, weight in config.levels.items():
        if not weight:
            continue
        s = scores[level]
        extra = queue_scores if level == "video_sentence" and queue_scores is not None else (None, None)
        loss = info_nce(s, config.temperature, exclude, *extra)
        if config.negnce_weight:
            loss = loss + config.negnce_weight * neg_nce_penalty(s, config.temperature, exclude)
        if config.margin_weight:
            loss = loss + config.margin_weight * hardest_negative_margin(s, config.margin, exclude)
        losses[level] = weight * loss
    return losses


@torch.no_grad()
def validate(pair: EncoderPair, cache: FeatureCache, chunk: int = 64) -> dict[str, float]:
    """Text->video R@1 per level, and of their mean ('fused'), over the whole-video captions of `cache`."""
    pair.modules().eval()
    rows = []
    for start in range(0, len(cache.video_features), chunk):
        ids = list(range(start, min(start + chunk, len(cache.video_features))))
        rows.append(encode_videos(pair, [cache.video_features[i].float() for i in ids],
                                  [cache.timestamps[i] for i in ids], [cache.durations[i] for i in ids])[:5])
    texts = torch.nonzero(cache.caption).squeeze(1)
    sentence, phrases, phrase_mask, words = pair.text.from_trunk(
        cache.text_states[texts].float(), cache.attention_mask[texts], cache.phrase_ids[texts])
    word_mask = (cache.phrase_ids[texts] >= 0).float()
    per_level: dict[str, list[torch.Tensor]] = {level: [] for level in LOSS_LEVELS}
    for frames, frame_mask, clips, clip_mask, video in rows:
        e = Encoded(frames, frame_mask, clips, clip_mask, video, sentence, phrases, phrase_mask, words, word_mask,
                    torch.zeros(()))
        for level, s in level_scores(e).items():
            per_level[level].append(s)
    scores = {level: torch.cat(parts) for level, parts in per_level.items()}
    scores["fused"] = sum(scores[level] for level in SERVED_LEVELS) / len(SERVED_LEVELS)
    truth = cache.text_video[texts]
    return {level: float((s.argmax(0) == truth).float().mean()) for level, s in scores.items()}


def selection_score(r1: dict[str, dict[str, float]], baseline: dict[str, dict[str, float]]) -> tuple[float, float]:
    """(worst, mean) gain over step 0 of the validation sets' fused R@1: keep a state only where every set gained."""
    gains = [r1[name]["fused"] - baseline[name]["fused"] for name in baseline]
    return min(gains), float(np.mean(gains))


def _seed_everything(seed: int) -> random.Random:
    torch.manual_seed(seed)
    np.random.seed(seed)
    return random.Random(seed)


def _ema(target: EncoderPair, source: EncoderPair, momentum: float) -> None:
    with torch.no_grad():
        for t, s in zip(target.modules().parameters(), source.modules().parameters(), strict=True):
            if s.requires_grad:
                t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


def train(
    config: TrainConfig, out: Path, log: Callable[[dict[str, Any]], None] | None = None,
    caching: Callable[[str, int, int], None] | None = None,
) -> RunResult:
    """Run one training from `config` into the checkpoint folder `out`.

    `log` sees every record written to the run's log; `caching(split, done, total)` follows the one-off
    decoding and encoding of the videos.
    """
    data = config.data
    missing = [str(p) for p in [data.train, *data.val] if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no training data at {missing}: `vidstrata train` generates it when the config "
                                "has [data.generate]")
    rng = _seed_everything(config.seed)
    base_folder = config.base or PARAMETER_FREE_CHECKPOINT
    if config.base is None and not (base_folder / MANIFEST_FILE).is_file():
        build_default_checkpoint(base_folder, heads=None)
    base = load_checkpoint(base_folder)
    if base.manifest.heads is not None:
        raise ValueError(f"{base_folder} already has heads; train on a checkpoint without them")
    pair = with_heads(base, config.heads)
    tokenizer = base_folder / TOKENIZER_FILE
    caches = {path.stem: build_feature_cache(pair, tokenizer, path, data.cache_dir, data.fps, data.max_frames,
                                             caching and (lambda done, total, s=path.stem: caching(s, done, total)))
              for path in [data.train, *data.val]}
    train_cache = caches.pop(data.train.stem)
    if not caches:
        raise ValueError("the validation sets must be files other than the training set")

    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.jsonl"
    log_file = log_path.open("w")

    def record(entry: dict[str, Any]) -> None:
        log_file.write(json.dumps(entry) + "\n")
        log_file.flush()
        if log:
            log(entry)

    params = trainable_parameters(pair)
    optimizer = torch.optim.AdamW(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.optim.lr, total_steps=config.optim.steps, pct_start=0.1)
    queue = MomentumQueue(pair.manifest.dim, config.loss.queue_size) if config.loss.queue_size else None
    momentum_pair = copy.deepcopy(pair) if queue else None

    baseline = {name: validate(pair, cache) for name, cache in caches.items()}
    record({"step": 0, "val_r1": baseline})
    best, best_step, best_state = baseline, 0, copy.deepcopy(pair.modules().state_dict())
    stream = batches(train_cache, config.optim.batch_size, rng)
    started = time.perf_counter()
    for step in range(1, config.optim.steps + 1):
        pair.modules().train()
        batch = next(stream)
        e = encode(pair, batch)
        queue_scores = None
        if queue is not None and momentum_pair is not None:
            with torch.no_grad():
                keys = encode(momentum_pair, batch)
            queue_scores = queue.extra_scores(e.video, e.sentence, batch.video_ids)
        losses = compute_losses(e, config.loss, batch.exclude, queue_scores)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        schedule.step()
        if queue is not None and momentum_pair is not None:
            _ema(momentum_pair, pair, config.loss.momentum)
            queue.push(keys.video, keys.sentence, batch.video_ids)
        entry: dict[str, Any] = {"step": step, "loss": float(total.detach()),
                                 **{f"loss_{k}": float(v.detach()) for k, v in losses.items()}}
        if step % config.optim.eval_every == 0 or step == config.optim.steps:
            entry["val_r1"] = {name: validate(pair, cache) for name, cache in caches.items()}
            entry["elapsed_s"] = round(time.perf_counter() - started, 1)
            if selection_score(entry["val_r1"], baseline) > selection_score(best, baseline):
                best, best_step, best_state = entry["val_r1"], step, copy.deepcopy(pair.modules().state_dict())
        record(entry)
    log_file.close()

    pair.modules().load_state_dict(best_state)
    pair.modules().eval()
    pair.manifest = pair.manifest.model_copy(update={
        "training": {"config": json.loads(config.model_dump_json()), "best_step": best_step,
                     "val_r1_parameter_free": baseline, "val_r1": best},
        "description": pair.manifest.description + "; trained multi-level heads",
    })
    save_checkpoint(pair, out, tokenizer)
    save_heads(pair, base, out / HEADS_FOLDER)
    return RunResult(out, best_step, baseline, best)


def score_checkpoints(
    checkpoints: list[Path], dataset: Path, cache_dir: Path = Path("build/train-cache"), fps: float = 2.0,
    max_frames: int = 64,
) -> dict[str, dict[str, float]]:
    """Text->video R@1 per level of each checkpoint on one dataset's video captions, as `validate` measures it."""
    scores = {}
    for folder in checkpoints:
        pair = load_checkpoint(folder)
        cache = build_feature_cache(pair, folder / TOKENIZER_FILE, dataset, cache_dir, fps, max_frames)
        scores[str(folder)] = validate(pair, cache)
    return scores


def main(argv: list[str] | None = None, prepare_data: Callable[[DataConfig], None] | None = None) -> None:
    """`python -m vidstrata.encoders.train run CONFIG --out DIR` (a run with a progress bar) or `score --dataset D CKPT...`.

    `prepare_data` writes a run's datasets before it starts (`vidstrata train` passes bench's split generator).
    """
    import argparse

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    parser = argparse.ArgumentParser(prog="vidstrata train", description="Train the multi-level heads.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="one training run")
    run.add_argument("config", type=Path, help="a TOML run config (see encoders/configs/)")
    run.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument("--threads", type=int, help="torch threads (1 is fastest on a busy 2-core machine)")
    score = commands.add_parser("score", help="validation R@1 per level of checkpoints on a dataset JSONL")
    score.add_argument("checkpoints", type=Path, nargs="+")
    score.add_argument("--dataset", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "score":
        for folder, r1 in score_checkpoints(args.checkpoints, args.dataset).items():
            print(f"{folder}: " + " ".join(f"{k} {v:.3f}" for k, v in r1.items()))
        return
    config = TrainConfig.load(args.config)
    if prepare_data:
        prepare_data(config.data)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[status]}")) as progress:
        cache_task = progress.add_task("cache", total=None, status="decoding and encoding videos once")
        task = progress.add_task("train", total=config.optim.steps, status="")

        def cached(split: str, done: int, total: int) -> None:
            progress.update(cache_task, description=f"cache {split}", completed=done, total=total)

        def show(entry: dict[str, Any]) -> None:
            for name, r1 in entry.get("val_r1", {}).items():
                levels = " ".join(f"{k} {v:.2f}" for k, v in r1.items())
                progress.console.print(f"step {entry['step']}: {name} R@1 {levels}")
            if "loss" in entry:
                progress.update(task, completed=entry["step"], status=f"loss {entry['loss']:.3f}")

        result = train(config, args.out, show, cached)
    print(f"wrote {result.checkpoint} (best step {result.best_step}); heads alone in {result.checkpoint / HEADS_FOLDER}")


if __name__ == "__main__":
    main()
