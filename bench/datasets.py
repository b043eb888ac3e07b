"""Evaluation sets for `vidstrata eval`: their queries and two built-in generators.

A dataset is a JSONL file in the format of `encoders.dataset` (shared with training; re-exported here).
Every caption and every scene caption is a query:

- a *video* query (from `captions`) targets its video;
- a *scene* query (from `scenes`) targets its video and the scene's span, which `best_clip` should hit;
- a *speech* or *screen_text* query (a scene whose caption paraphrases what is said or shown in its span)
  targets its video and that span.

A query text can describe several videos (the `scenes` set reuses 16 photos), so each query carries the
videos it describes equally well (`relevant`): ranks are *filtered*, counting only the non-relevant
videos ranked above the target (as in link-prediction evaluation), and every (video, caption) pair stays
one query with one target.

Generators (videos written by media/synthetic.py, H.264 with a short keyframe interval):

- `scenes`: 2-5 real scikit-image photos per video, in random order with random durations, one scene each;
- `shapes`: 2-4 coloured shapes crossing a black frame, one event each, with templated multi-event captions
  ("a red circle moves left, then a blue square appears");
- `narrated`: two scenes of photos drawn from only three (pictures alone cannot tell the videos apart), a line
  spoken by espeak-ng in each scene or a caption rendered into the second; queries paraphrase what is said or
  shown, never with its words, plus the photos' captions as visual queries.
- `ordered`: pairs of videos showing the same two photos in opposite orders, with the same durations and pans (issue 23);
  their captions state the order in several phrasings ("A then B", "B after A", ...), and the pair's other
  video is the one a caption must rank below its own (`reverses`, `order_phrasing`);
- `moments`: a photo, another, then the first again (A, B, A): the query for A should find both of its spans
  among the hit's moments.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vidstrata.media.photos import CAPTIONS, load_photo
from vidstrata.media.synthetic import COLORS, SHAPE_COLORS, SHAPES, ShapeEvent, narration_track, write_scene_video, write_shapes_video
from vidstrata.encoders.dataset import Item, Scene, write_jsonl
from vidstrata.encoders.dataset import read_jsonl as read_jsonl  # re-exported: bench.eval reads datasets through this module
from vidstrata.spec.preprocess import phrase_texts

QueryKind = Literal["scene", "video", "speech", "screen_text"]
QUERY_KINDS: tuple[QueryKind, ...] = ("scene", "video", "speech", "screen_text")
Span = tuple[float, float]

MOTIONS = ("left", "right", "up", "down")


@dataclass(frozen=True)
class Query:
    """One query: its text, the video it was written for, that video's span (scene queries), and every
    video the text describes equally (the target included)."""

    text: str
    kind: QueryKind
    target: str
    span: Span | None
    relevant: frozenset[str]


@dataclass(frozen=True)
class Sizes:
    """How big the generated videos are; `tiny` keeps the smoke tests fast."""

    scenes: tuple[int, int] = (2, 5)  # scenes (or events) per video, inclusive
    scene_s: tuple[float, float] = (2.0, 6.0)  # duration of one scene, uniform, rounded to 0.5 s
    size: tuple[int, int] = (320, 240)
    fps: int = 10


TINY = Sizes(scenes=(2, 3), scene_s=(2.0, 3.0), size=(160, 120), fps=10)


def queries(items: Sequence[Item]) -> list[Query]:
    """Every (video, caption) and (video, scene caption) pair as one query, in file order.

    A text's relevant videos are all videos carrying it at the same level (caption or scene). A text that
    appears twice in one video counts once, at its first span.
    """
    holders: dict[tuple[QueryKind, str], set[str]] = defaultdict(set)
    for item in items:
        for caption in item.captions:
            holders["video", caption].add(item.video_id)
        for scene in item.scenes:
            holders[_kind(scene), scene.caption].add(item.video_id)
    out: list[Query] = []
    for item in items:
        seen: set[tuple[QueryKind, str]] = set()
        for caption in item.captions:
            if ("video", caption) not in seen:
                seen.add(("video", caption))
                out.append(Query(caption, "video", item.video_id, None, frozenset(holders["video", caption])))
        for scene in item.scenes:
            kind = _kind(scene)
            if (kind, scene.caption) not in seen:
                seen.add((kind, scene.caption))
                out.append(Query(scene.caption, kind, item.video_id, (scene.start_s, scene.end_s),
                                 frozenset(holders[kind, scene.caption])))
    return out


def _kind(scene: Scene) -> QueryKind:
    return "scene" if scene.modality == "visual" else scene.modality  # type: ignore[return-value]


def _durations(rng: np.random.Generator, count: int, sizes: Sizes) -> list[float]:
    low, high = sizes.scene_s
    return [float(np.round(rng.uniform(low, high) * 2) / 2) for _ in range(count)]


def make_scenes(out_dir: Path, videos: int, seed: int = 0, sizes: Sizes = Sizes()) -> Path:
    """`videos` multi-scene videos from the captioned photos; returns the JSONL path (out_dir/scenes.jsonl).

    Each video shows 2-5 distinct photos in random order, each for a random duration. Its caption lists the
    scenes in order ("A, then B, then C"); each scene's caption is its photo's caption.
    """
    rng = np.random.default_rng(seed)
    names = sorted(CAPTIONS)
    photos: dict[str, np.ndarray] = {}
    items = []
    for i in range(videos):
        count = int(rng.integers(sizes.scenes[0], sizes.scenes[1] + 1))
        chosen = [names[j] for j in rng.choice(len(names), size=count, replace=False)]
        for name in chosen:
            if name not in photos:
                photos[name] = load_photo(name)
        durations = _durations(rng, count, sizes)
        path = out_dir / "videos" / f"scenes-{i:04d}.mp4"
        spans = write_scene_video(path, [photos[n] for n in chosen], durations, fps=sizes.fps, size=sizes.size,
                                  gop=sizes.fps, seed=seed * 100_003 + i)
        scenes = [Scene(a, b, CAPTIONS[n]) for (a, b), n in zip(spans, chosen, strict=True)]
        items.append(Item(path, [", then ".join(s.caption for s in scenes)], scenes))
    return write_jsonl(out_dir / "scenes.jsonl", items)


def _mentioned(event: ShapeEvent, first: bool, rng: np.random.Generator) -> str:
    """One event as a clause of the video's caption: its motion, or (after the first) just its arrival."""
    thing = f"a {event.color} {event.shape}"
    if not first and rng.random() < 0.4:
        return f"{thing} appears"
    return f"{thing} moves {event.motion}"


def make_shapes(out_dir: Path, videos: int, seed: int = 0, sizes: Sizes = Sizes()) -> Path:
    """`videos` moving-shapes videos; returns the JSONL path (out_dir/shapes.jsonl).

    Each video has 2-4 events; consecutive events differ in shape or colour. Scene captions come from
    media/synthetic.py ("a red circle moving left"); the video caption joins the events with ", then ".
    """
    rng = np.random.default_rng(seed)
    items = []
    for i in range(videos):
        count = int(rng.integers(sizes.scenes[0], sizes.scenes[1] + 1))
        durations = _durations(rng, count, sizes)
        events: list[ShapeEvent] = []
        while len(events) < count:
            event = ShapeEvent(shape=SHAPES[rng.integers(len(SHAPES))], color=SHAPE_COLORS[rng.integers(len(SHAPE_COLORS))],
                               motion=MOTIONS[rng.integers(len(MOTIONS))], duration_s=durations[len(events)])
            if events and (event.shape, event.color) == (events[-1].shape, events[-1].color):
                continue  # two identical shapes in a row would be one scene to the eye
            events.append(event)
        path = out_dir / "videos" / f"shapes-{i:04d}.mp4"
        spans = write_shapes_video(path, events, fps=sizes.fps, size=sizes.size, gop=sizes.fps)
        caption = ", then ".join(_mentioned(e, j == 0, rng) for j, e in enumerate(events))
        items.append(Item(path, [caption], [Scene(s.start_s, s.end_s, s.caption) for s in spans]))
    return write_jsonl(out_dir / "shapes.jsonl", items)


# (what is said, a paraphrase that shares none of its content words): Whisper tiny.en hears these espeak-ng
# lines well; the paraphrase is the query.
SPOKEN = [
    ("The boy rides his bicycle along the river.", "a kid pedalling a bike beside the water"),
    ("Fresh bread comes out of the oven.", "warm loaves taken from a hot stove"),
    ("A long train leaves the station at noon.", "a railway departure at midday"),
    ("Two dogs chase a ball across the park.", "puppies running after a toy on the grass"),
    ("She opens the window and the morning light comes in.", "sunshine entering a room at dawn"),
    ("The farmer feeds the cows in the barn.", "cattle getting their meal from a rancher"),
    ("We are painting the kitchen walls blue.", "decorating the cooking room in an ocean colour"),
    ("The children build a castle of sand on the beach.", "kids playing with sand by the sea"),
    ("My grandmother knits a warm scarf for winter.", "an old lady making woollen clothes for the cold season"),
    ("The pilot lands the plane during the storm.", "an aircraft touching down in bad weather"),
    ("Please turn off your phone before the movie starts.", "switch off mobiles ahead of the film"),
    ("The doctor checks the heartbeat of the patient.", "a physician listening to someone's pulse"),
]
SHOWN = [
    ("Summer sale: 40% off all running shoes", "discounted jogging sneakers"),
    ("Free delivery on orders over 50 dollars", "no shipping cost above a minimum purchase"),
    ("Chapter 3: how volcanoes erupt", "a lesson about lava and eruptions"),
    ("Open daily from 7 am to 6 pm", "business hours of the shop"),
    ("Recipe: lemon cake with honey", "instructions for baking a citrus dessert"),
    ("Warning: wet floor", "caution, slippery ground"),
]
NARRATED_PHOTOS = ("coffee", "chelsea", "rocket")  # few photos, reused: pictures cannot tell videos apart


def make_narrated(out_dir: Path, videos: int, seed: int = 0, sizes: Sizes = Sizes()) -> Path:
    """`videos` narrated videos; returns the JSONL path (out_dir/narrated.jsonl).

    Each video has two scenes of 5 s (4 s for `tiny` sizes) showing two of three photos. A line from SPOKEN is
    said in the first scene; the second scene shows a caption from SHOWN (every other video) or has a second
    line said. Each scene yields a visual query (its photo's caption) and a speech or screen_text query (the
    paraphrase) with the scene's span. Lines repeat past 12 videos; a query then has several relevant videos.
    """
    rng = np.random.default_rng(seed)
    photos = {name: load_photo(name) for name in NARRATED_PHOTOS}
    scene_s = 4.0 if sizes.scene_s[1] <= 3.0 else 5.0
    items = []
    for i in range(videos):
        chosen = [NARRATED_PHOTOS[j] for j in rng.choice(len(NARRATED_PHOTOS), size=2, replace=False)]
        first = SPOKEN[i % len(SPOKEN)]
        shown = SHOWN[(i // 2) % len(SHOWN)] if i % 2 == 0 else None
        second = None if shown else SPOKEN[(i + len(SPOKEN) // 2) % len(SPOKEN)]
        lines = [(0.5, first[0])] + ([(scene_s + 0.5, second[0])] if second else [])
        audio, _ = narration_track(lines, 2 * scene_s)
        path = out_dir / "videos" / f"narrated-{i:04d}.mp4"
        spans = write_scene_video(path, [photos[n] for n in chosen], [scene_s, scene_s], fps=sizes.fps,
                                  size=sizes.size, gop=sizes.fps, seed=seed * 100_003 + i, audio=audio,
                                  captions=[None, shown[0] if shown else None])
        (a0, b0), (a1, b1) = spans
        scenes = [Scene(a0, b0, CAPTIONS[chosen[0]]), Scene(a0, b0, first[1], "speech"),
                  Scene(a1, b1, CAPTIONS[chosen[1]])]
        scenes.append(Scene(a1, b1, shown[1], "screen_text") if shown else Scene(a1, b1, second[1], "speech"))
        items.append(Item(path, [f"{CAPTIONS[chosen[0]]}, then {CAPTIONS[chosen[1]]}"], scenes))
    return write_jsonl(out_dir / "narrated.jsonl", items)


# How the `ordered` set states an order: issue 23's phrasings, each with A the earlier event and B the later one.
ORDER_PHRASINGS = {
    "A then B": "{a} then {b}",
    "A and then B": "{a} and then {b}",
    "A, then B": "{a}, then {b}",
    "after A, B": "after {a}, {b}",
    "B after A": "{b} after {a}",
    "A before B": "{a} before {b}",
    "A followed by B": "{a} followed by {b}",
    "first A, then B": "first {a}, then {b}",
}
# Photos whose caption is one phrase (the splitter leaves it whole: "galaxies and stars in deep space" is two), so
# an ordered caption of two photos has exactly two phrases.
ORDER_PHOTOS = tuple(name for name in sorted(CAPTIONS) if phrase_texts(CAPTIONS[name], 8) == [CAPTIONS[name]])


def _visual_captions(item: Item) -> tuple[str, ...]:
    return tuple(s.caption for s in sorted(item.scenes, key=lambda s: s.start_s) if s.modality == "visual")


def reverses(items: Sequence[Item]) -> dict[str, str]:
    """Video -> the one other video that shows its two or more scenes in the opposite order (videos without exactly
    one such video are left out): the video an ordered caption must rank below its own."""
    holders: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for item in items:
        holders[_visual_captions(item)].append(item.video_id)
    out = {}
    for item in items:
        scenes = _visual_captions(item)
        others = [v for v in holders.get(scenes[::-1], []) if v != item.video_id]
        if len(scenes) >= 2 and scenes != scenes[::-1] and len(others) == 1:
            out[item.video_id] = others[0]
    return out


def order_phrasing(item: Item, text: str) -> str | None:
    """The name of the ORDER_PHRASINGS entry that `text` is for this two-scene video (A its first scene), else None."""
    scenes = _visual_captions(item)
    if len(scenes) != 2:
        return None
    return next((name for name, template in ORDER_PHRASINGS.items()
                 if template.format(a=scenes[0], b=scenes[1]) == text), None)


def make_ordered(out_dir: Path, videos: int, seed: int = 0, sizes: Sizes = Sizes()) -> Path:
    """`videos` // 2 pairs (at least one) of videos showing two photos (ORDER_PHOTOS) in opposite orders; returns
    the JSONL path (out_dir/ordered.jsonl).

    A pair's photos are a pair no other pair has (so at most 105 pairs: more raise ValueError), each shown for the same
    whole number of seconds in both videos (every cut on a keyframe) with the same pan: the two differ in their order,
    and otherwise only in pixel noise and compression, so every level but an order-aware one scores them nearly alike.
    Each video's captions are every phrasing of ORDER_PHRASINGS in its order; which of the pair (`ordered-NNNN-a` /
    `-b`) is A-then-B is drawn at random, so no tie-break by id favours the right one.
    """
    rng = np.random.default_rng(seed)
    pairs = [(a, b) for i, a in enumerate(ORDER_PHOTOS) for b in ORDER_PHOTOS[i + 1:]]
    count = max(1, videos // 2)
    if count > len(pairs):
        raise ValueError(f"the ordered set has {len(pairs)} pairs of photos, so at most {2 * len(pairs)} videos")
    photos: dict[str, np.ndarray] = {}
    items = []
    for pair, index in enumerate(rng.permutation(len(pairs))[:count]):
        chosen = list(pairs[index])
        for name in chosen:
            if name not in photos:
                photos[name] = load_photo(name)
        durations = [max(1.0, float(np.round(d))) for d in _durations(rng, 2, sizes)]
        flip = bool(rng.random() < 0.5)
        for k, reverse in (("a", flip), ("b", not flip)):
            shown = [1, 0] if reverse else [0, 1]
            path = out_dir / "videos" / f"ordered-{pair:04d}-{k}.mp4"
            spans = write_scene_video(path, [photos[chosen[j]] for j in shown], [durations[j] for j in shown],
                                      fps=sizes.fps, size=sizes.size, gop=sizes.fps,
                                      seed=seed * 100_003 + 2 * pair + (k == "b"))
            scenes = [Scene(a, b, CAPTIONS[chosen[j]]) for (a, b), j in zip(spans, shown, strict=True)]
            first, second = scenes[0].caption, scenes[1].caption
            items.append(Item(path, [t.format(a=first, b=second) for t in ORDER_PHRASINGS.values()], scenes))
    return write_jsonl(out_dir / "ordered.jsonl", items)


def make_moments(out_dir: Path, videos: int, seed: int = 0, sizes: Sizes = Sizes()) -> Path:
    """`videos` videos showing a photo, another, then the first again (A, B, A), each for a random duration; returns
    the JSONL path (out_dir/moments.jsonl). The scene query for A targets the video and both of A's spans (its two
    best moments should be them); the video caption is "A, then B, then A"."""
    rng = np.random.default_rng(seed)
    names = sorted(CAPTIONS)
    photos: dict[str, np.ndarray] = {}
    items = []
    for i in range(videos):
        chosen = [names[j] for j in rng.choice(len(names), size=2, replace=False)]
        for name in chosen:
            if name not in photos:
                photos[name] = load_photo(name)
        shown = [chosen[0], chosen[1], chosen[0]]
        path = out_dir / "videos" / f"moments-{i:04d}.mp4"
        spans = write_scene_video(path, [photos[n] for n in shown], _durations(rng, 3, sizes), fps=sizes.fps,
                                  size=sizes.size, gop=sizes.fps, seed=seed * 100_003 + i)
        scenes = [Scene(a, b, CAPTIONS[n]) for (a, b), n in zip(spans, shown, strict=True)]
        items.append(Item(path, [", then ".join(s.caption for s in scenes)], scenes))
    return write_jsonl(out_dir / "moments.jsonl", items)


def scene_spans(items: Sequence[Item]) -> dict[tuple[str, str], list[Span]]:
    """(video, scene caption) -> every span of that video the caption describes, in time order (the `moments` set
    shows a scene twice)."""
    spans: dict[tuple[str, str], list[Span]] = defaultdict(list)
    for item in items:
        for scene in sorted(item.scenes, key=lambda s: s.start_s):
            spans[item.video_id, scene.caption].append((scene.start_s, scene.end_s))
    return dict(spans)


GENERATORS = {"scenes": make_scenes, "shapes": make_shapes, "narrated": make_narrated, "ordered": make_ordered,
              "moments": make_moments}
