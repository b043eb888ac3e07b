"""Offline what-if for clip segmentation: retrieval per level with other `SegmentationParams`.

Not the evaluation (that is `python -m bench.eval`, through the real stack): a diagnosis tool that replays the
same functions ingest and the gateway run (vidstrata.media.video sampling, the exported ONNX frame and text graphs,
spec.aggregation, gateway.scoring, gateway.fusion) in one process, so a change to the segmentation can be
judged before it ships. Every video is searched against every query (no ANN), as the eval does.

    python docs/scripts/segmentation_whatif.py DATASET.jsonl [--min-novelty 0.02 0.005 0.002] [--oracle]

DATASET.jsonl: a bench.datasets file, e.g. written by `python -m bench.eval --work-dir W` (W/scenes/scenes.jsonl).
Needs `build/checkpoints/default` and an exported repository (`--model-repository`, default build/model_repository).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.datasets import Item, queries, read_jsonl  # noqa: E402
from bench.metrics import RankedVideo, score_queries  # noqa: E402
from vidstrata.spec.aggregation import SegmentationParams, aggregate_video  # noqa: E402
from vidstrata.gateway.fusion import FusionConfig, FusionMethod, fuse  # noqa: E402
from vidstrata.gateway.query import query_vectors  # noqa: E402
from vidstrata.gateway.scoring import score_candidates  # noqa: E402
from vidstrata.gateway.settings import GatewaySettings  # noqa: E402
from vidstrata.index.store import ClipRecord, VideoRecord  # noqa: E402
from vidstrata.inference.encoder import Encoder  # noqa: E402
from vidstrata.inference.factory import open_encoder  # noqa: E402
from vidstrata.media.video import VideoReader  # noqa: E402
from vidstrata.workers.settings import WorkerSettings  # noqa: E402


def frame_vectors(encoder: Encoder, item: Item, worker: WorkerSettings) -> tuple[np.ndarray, np.ndarray, float]:
    with VideoReader(item.video, encoder.info().image_size, worker.sample_fps, worker.max_frames,
                     worker.max_duration_s) as reader:
        stamps, vectors = [], []
        for batch in reader.batches(worker.frame_batch):
            stamps.append(batch.timestamps)
            vectors.append(encoder.encode_frames(batch.frames))
        return np.concatenate(stamps), np.concatenate(vectors), float(reader.duration_s or 0.0)


def oracle_clips(item: Item, stamps: np.ndarray, vectors: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
    """One clip per true scene: what a perfect segmentation would index."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    clips = []
    for scene in item.scenes:
        inside = (stamps >= scene.start_s - 1e-6) & (stamps < scene.end_s - 1e-6)
        mean = unit[inside].mean(0)
        clips.append((scene.start_s, scene.end_s, mean / np.linalg.norm(mean)))
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--min-novelty", type=float, nargs="+", default=[0.02, 0.005, 0.002])
    parser.add_argument("--oracle", action="store_true", help="also index the true scenes as clips")
    parser.add_argument("--checkpoint", type=Path, default=Path("build/checkpoints/default"))
    parser.add_argument("--model-repository", type=Path, default=Path("build/model_repository"))
    args = parser.parse_args()
    repo = args.model_repository
    encoder = open_encoder(repository=repo)
    items = read_jsonl(args.dataset)
    worker, gateway = WorkerSettings(), GatewaySettings()
    frames = {item.video_id: frame_vectors(encoder, item, worker) for item in items}
    qs = queries(items)
    spans = {(i.video_id, s.caption): (s.start_s, s.end_s) for i in items for s in i.scenes}
    texts = sorted({q.text for q in qs})
    vectors = {t: query_vectors(t, encoder.encode_text([t])) for t in texts}
    ids = [item.video_id for item in items]
    configs = [(level.replace("_", "-"), FusionMethod.WEIGHTED, {level: 1.0})
               for level in ("video_sentence", "clip_sentence", "clip_phrase")]
    configs += [(f"fused {m.value}", m, gateway.fusion_weights) for m in FusionMethod]
    variants: list[tuple[str, SegmentationParams | None]] = [
        (f"min_novelty {floor:g}", SegmentationParams(min_novelty=floor)) for floor in args.min_novelty]
    if args.oracle:
        variants.append(("true scenes (oracle)", None))
    for name, params in variants:
        videos, clips = {}, {}
        for item in items:
            stamps, vecs, duration = frames[item.video_id]
            if params is None:
                found = oracle_clips(item, stamps, vecs)
                video = np.mean([c[2] for c in found], axis=0)
            else:
                aggregate = aggregate_video(vecs, stamps, duration, params)
                found = [(c.start_s, c.end_s, c.vector) for c in aggregate.clips]
                video = aggregate.vector
            videos[item.video_id] = VideoRecord(item.video_id, video, duration, len(found), {}, 0.0)
            clips[item.video_id] = [ClipRecord(item.video_id, k, a, b, v) for k, (a, b, v) in enumerate(found)]
        cuts = [(item, [c.start_s for c in clips[item.video_id][1:]]) for item in items]
        found_cuts = sum(any(abs(b - s.start_s) <= 0.5 for b in bounds) for item, bounds in cuts for s in item.scenes[1:])
        true_cuts = sum(len(item.scenes) - 1 for item in items)
        print(f"\n{name}: {sum(len(c) for c in clips.values())} clips for {true_cuts + len(items)} scenes; "
              f"{found_cuts}/{true_cuts} true cuts found (within 0.5 s)")
        for label, method, weights in configs:
            fusion = FusionConfig(method, weights, gateway.normalization, gateway.rrf_k)
            ranking = {}
            for text in texts:
                scored = score_candidates(vectors[text], ids, videos, clips)
                fused = fuse(scored.levels, fusion)
                order = sorted(range(len(scored.video_ids)), key=lambda i: (-fused[i], scored.video_ids[i]))
                ranking[text] = [RankedVideo(scored.video_ids[i], float(fused[i]), {},
                                     (scored.best_clips[i].start_s, scored.best_clips[i].end_s)) for i in order]
            for kind in ("scene", "video"):
                group = [q for q in qs if q.kind == kind]
                if not group:
                    continue
                m = score_queries(group, lambda q: ranking[q.text], spans, len(ids))
                span = f"  span IoU>=0.5 {100 * m.span_hit:5.1f}" if m.span_hit is not None else ""
                print(f"  {label:15s} {kind:5s} n={m.queries:3d}  R@1 {100 * m.r1:5.1f}  R@5 {100 * m.r5:5.1f}  "
                      f"R@10 {100 * m.r10:5.1f}  MdR {m.median_rank:4g}  MnR {m.mean_rank:5.1f}{span}")


if __name__ == "__main__":
    main()
