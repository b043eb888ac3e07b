"""`make bench-ingest` (`python -m bench.ingest`): end-to-end ingest throughput against the bare frame encoder.

Stack: redis-server, Milvus Lite, tritonserver (python target of the default checkpoint) and a real Celery
worker (`python -m vidstrata.workers.main`), all on this machine. Videos are submitted the way the gateway does it
(a PENDING status record, then the task by name through `gateway.ingest.CeleryIngestQueue`), and each is
timed from submit to READY.

Workloads: a batch of 1-minute 224p videos submitted together, then one 10-minute 224p video, each on a
fresh worker, so each worker's peak RSS (VmHWM of its processes) belongs to that workload alone; equal
peaks for 1 and 10 minutes show that decoding streams. The bare encoder is `OnnxEncoder` in this process
on the same graph and batch size, measured before the servers start. ratio = end-to-end frames/s over
bare frames/s (the target is >= 0.8).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery

from bench.common import RESULTS_DIR, machine, median_of, median_runs, rate, write_results
from vidstrata.media.photos import CAPTIONS, load_photo
from vidstrata.media.synthetic import narration_track, write_long_video, write_scene_video
from vidstrata.export.pipeline import export_checkpoint, resolve_checkpoint
from vidstrata.gateway.ingest import CeleryIngestQueue
from vidstrata.stack.milvus import start_milvus_lite
from vidstrata.jobs.status import IngestState, StatusStore
from vidstrata.inference.factory import open_encoder
from vidstrata.inference.triton_encoder import TritonEncoder
from vidstrata.stack.triton import TritonPorts, start_tritonserver
from vidstrata.stack.process import ManagedProcess, free_port
from vidstrata.stack.redis import find_or_install_redis, start_redis
from vidstrata.media.video import VideoReader
from vidstrata.stack.worker import start_worker


@dataclass(frozen=True)
class Workload:
    name: str
    duration_s: float
    videos: int


@dataclass(frozen=True)
class Servers:
    redis_url: str
    milvus_uri: str
    triton_url: str


@contextmanager
def servers(work: Path, repository: Path) -> Iterator[Servers]:
    """redis-server, Milvus Lite and tritonserver on free ports, stopped on exit."""
    with ExitStack() as stack:
        port = free_port()
        stack.callback(start_redis(find_or_install_redis()[0], work / "redis", port).stop)
        milvus, milvus_uri = start_milvus_lite(work / "milvus")
        stack.callback(milvus.stop)
        ports = TritonPorts.free()
        triton = start_tritonserver(repository, work / "triton", ports)
        stack.callback(triton.stop)
        triton_url = f"127.0.0.1:{ports.grpc}"
        probe = TritonEncoder(triton_url)
        triton.wait_ready(probe.ready, timeout_s=180)
        probe.close()
        yield Servers(f"redis://127.0.0.1:{port}/0", milvus_uri, triton_url)


class BareEncoder:
    """The frame graph Triton serves, run in this process (ONNX Runtime, all cores) on one batch of real frames."""

    def __init__(self, checkpoint: Path, repository: Path, video: Path, batch: int, sample_fps: float) -> None:
        self.encoder = open_encoder(repository=repository)
        with VideoReader(video, self.encoder.info().image_size, sample_fps, batch, 10**6) as reader:
            self.frames = next(reader.batches(batch)).frames

    def frames_per_s(self, seconds: float, repeats: int) -> float:
        return median_of(repeats, lambda: rate(lambda: len(self.encoder.encode_frames(self.frames)), seconds))


def peak_rss_mb(process: ManagedProcess) -> float:
    """Largest VmHWM (peak resident set) among the processes of the worker's process group."""
    peak_kb = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if os.getpgid(int(status.parent.name)) != process.pid:
                continue
            line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        except (OSError, StopIteration):
            continue  # exited meanwhile, or a kernel thread
        peak_kb = max(peak_kb, int(line.split()[1]))
    return peak_kb / 1024


def run_workload(
    workload: Workload, paths: list[Path], env: dict[str, str], work: Path, timeout_s: float
) -> dict[str, Any]:
    """Start a fresh worker, submit all videos at once, wait for READY; throughput, per-stage times, peak RSS."""
    redis_url = env["VIDSTRATA_REDIS_URL"]
    status = StatusStore(redis_url, timeout_s=5.0)
    queue = CeleryIngestQueue(redis_url, timeout_s=5.0)
    results = Celery("bench-ingest", backend=redis_url, set_as_current=False)
    # the worker reads the benchmark's own videos and no other local file
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(work / f"metrics-{workload.name}"),
           "VIDSTRATA_WORKER_LOCAL_ROOTS": str(work.resolve())}
    worker = start_worker(env, work / f"worker-{workload.name}.log")
    try:
        tasks = {}
        started = time.perf_counter()
        for i, path in enumerate(paths):
            video_id, task_id = f"{workload.name}-{i}", str(uuid.uuid4())
            status.mark_pending(video_id, task_id, str(path), {})
            queue.enqueue(task_id, video_id, str(path), {})
            tasks[video_id] = task_id
        pending = set(tasks)
        while pending:
            for video_id in list(pending):
                record = status.get(video_id)
                if record is not None and record.state == IngestState.FAILED:
                    raise RuntimeError(f"{video_id} FAILED: {record.reason}")
                if record is not None and record.state == IngestState.READY:
                    pending.discard(video_id)
            if time.perf_counter() - started > timeout_s:
                raise TimeoutError(f"{sorted(pending)} not READY after {timeout_s:.0f} s\n{worker.log_tail()}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        summaries = [results.AsyncResult(task_id).get(timeout=30) for task_id in tasks.values()]
        rss = peak_rss_mb(worker)
    finally:
        worker.stop()
        queue.close()
        status.close()
        results.close()
    frames = sum(s["frames"] for s in summaries)
    stages = {stage: sum(s["timings_s"][stage] for s in summaries) for stage in summaries[0]["timings_s"]}
    return {
        "workload": workload.name, "videos": len(paths), "duration_s": workload.duration_s, "frames": frames,
        "seconds": elapsed, "frames_per_s": frames / elapsed, "videos_per_s": len(paths) / elapsed,
        "clips": sum(s["clip_count"] for s in summaries), "stage_seconds": stages, "peak_rss_mb": rss,
    }


NARRATION = ["The boy rides his bicycle along the river.", "Fresh bread comes out of the oven.",
             "The train leaves the station at noon.", "A red kite flies above the green hill.",
             "She opens the window and the morning light comes in.", "Two dogs chase a ball across the park."]


def write_narrated(path: Path, duration_s: float, fps: int, seed: int) -> None:
    """A video of 10-second scenes of real photos, a spoken line every 6 s (espeak-ng), captions on every other
    scene: the all-modalities workload."""
    photos = [load_photo(name) for name in CAPTIONS]
    scenes = max(1, round(duration_s / 10))
    lines = [(float(t), NARRATION[(seed + i) % len(NARRATION)]) for i, t in enumerate(range(0, int(duration_s) - 5, 6))]
    audio, _ = narration_track(lines, duration_s)
    captions = [f"Offer {seed}.{i}: {NARRATION[(seed + i) % len(NARRATION)]}" if i % 2 else None for i in range(scenes)]
    write_scene_video(path, [photos[(seed + i) % len(photos)] for i in range(scenes)], [duration_s / scenes] * scenes,
                      fps=fps, audio=audio, captions=captions)


def compare_modalities(paths: list[Path], duration_s: float, env: dict[str, str], work: Path,
                       runs: int) -> list[dict[str, Any]]:
    """The same narrated videos ingested visual-only, then with speech and on-screen text: seconds of video
    per second for each, and where the time went (summed per-video stage seconds)."""
    rows = []
    for name, on in (("visual only", "false"), ("all modalities", "true")):
        workload = Workload(f"narrated-{'all' if on == 'true' else 'visual'}", duration_s, len(paths))
        settings = {**env, "VIDSTRATA_WORKER_SPEECH": on, "VIDSTRATA_WORKER_SCREEN_TEXT": on}
        measured = [run_workload(workload, paths, settings, work, timeout_s=3600) for _ in range(runs)]
        row = {"modalities": name, **median_runs(measured), "runs": measured}
        row["video_s_per_s"] = len(paths) * duration_s / row["seconds"]
        rows.append(row)
        print(f"{name}: {row['video_s_per_s']:.2f} s of video per s, stages {row['stage_seconds']}", flush=True)
    rows[1]["vs_visual_only"] = rows[1]["video_s_per_s"] / rows[0]["video_s_per_s"]
    return rows


def modalities_table(rows: list[dict[str, Any]], videos: int, duration_s: float) -> str:
    stages = sorted({stage for r in rows for stage in r["stage_seconds"]})
    lines = [f"{videos} narrated videos of {duration_s:.0f} s with on-screen text, submitted together:", "",
             "| modalities | seconds | video s / s | vs visual only | " + " | ".join(f"{s} s" for s in stages) + " |",
             "|---|---|---|---|" + "---|" * len(stages)]
    for r in rows:
        cells = " | ".join(f"{r['stage_seconds'].get(s, 0.0):.1f}" for s in stages)
        lines.append(f"| {r['modalities']} | {r['seconds']:.1f} | {r['video_s_per_s']:.2f} | "
                     f"{r.get('vs_visual_only', 1.0):.2f} | {cells} |")
    return "\n".join(lines)


def table(rows: list[dict[str, Any]], batch: int, runs: int) -> str:
    lines = [
        f"| workload | videos | frames | seconds | frames/s | videos/s | bare encoder frames/s (batch {batch}) "
        "| ratio | worker peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['videos']} | {r['frames']} | {r['seconds']:.1f} | {r['frames_per_s']:.1f} | "
            f"{r['videos_per_s']:.3f} | {r['bare_frames_per_s']:.1f} | {r['ratio']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
    lines += ["", f"Every figure is the median of {runs} end-to-end runs (all runs are in ingest.json)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short-videos", type=int, default=4, help="1-minute videos submitted together")
    parser.add_argument("--fps", type=int, default=25, help="frame rate of the generated videos")
    parser.add_argument("--sample-fps", type=float, default=2.0, help="VIDSTRATA_WORKER_SAMPLE_FPS of the worker")
    parser.add_argument("--frame-batch", type=int, default=32, help="frames per Triton request and per bare call")
    parser.add_argument("--concurrency", type=int, default=1, help="videos one worker ingests at once")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each bare-encoder measurement")
    parser.add_argument("--repeats", type=int, default=3, help="bare-encoder measurements; the median is kept")
    parser.add_argument("--runs", type=int, default=3,
                        help="end-to-end runs per workload; every figure is the median over them")
    parser.add_argument("--model-repository", type=Path,
                        help="a python-target repository exported from the default checkpoint (skips the export)")
    parser.add_argument("--tiny", action="store_true", help="smoke run: two 6 s videos and one 20 s video")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--modalities", type=int, default=0, metavar="N",
                        help="instead: N narrated 1-minute videos with on-screen text, ingested visual-only and "
                        "with all modalities (speech, screen text) in the same run")
    args = parser.parse_args(argv)
    if args.modalities:
        return main_modalities(args)
    workloads = [Workload("1-min", 60.0, args.short_videos), Workload("10-min", 600.0, 1)]
    if args.tiny:
        workloads = [Workload("6-s", 6.0, 2), Workload("20-s", 20.0, 1)]
        args.seconds, args.repeats, args.frame_batch, args.runs = 0.5, 1, 8, 1
    checkpoint = resolve_checkpoint(None, Path("build"))
    photos = [load_photo(name) for name in CAPTIONS]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        repository = args.model_repository or export_checkpoint(checkpoint, "python", work / "repo").repository
        paths: dict[str, list[Path]] = {}
        for w in workloads:
            paths[w.name] = [work / f"{w.name}-{i}.mp4" for i in range(w.videos)]
            for i, path in enumerate(paths[w.name]):
                rotated = photos[i:] + photos[:i]  # different content per video
                scene_s = min(20.0, w.duration_s / 3)
                write_long_video(path, rotated, duration_s=w.duration_s, scene_s=scene_s, fps=args.fps)
        bare = BareEncoder(checkpoint, repository, paths[workloads[0].name][0], args.frame_batch, args.sample_fps)
        with servers(work, repository) as stack:
            env = dict(
                os.environ,
                VIDSTRATA_REDIS_URL=stack.redis_url,
                VIDSTRATA_MILVUS_URI=stack.milvus_uri,
                VIDSTRATA_TRITON_URL=stack.triton_url,
                VIDSTRATA_MILVUS_COLLECTION_PREFIX="bench_ingest_",
                VIDSTRATA_WORKER_SAMPLE_FPS=str(args.sample_fps),
                VIDSTRATA_WORKER_FRAME_BATCH=str(args.frame_batch),
                VIDSTRATA_WORKER_CONCURRENCY=str(args.concurrency),
                VIDSTRATA_WORKER_METRICS_PORT="0",
            )
            rows = []
            for w in workloads:
                runs = []
                for _ in range(args.runs):  # re-ingesting the same ids replaces them: every run does the full work
                    # Measured right before each run (the servers idle), so both see the same machine load.
                    bare_fps = bare.frames_per_s(args.seconds, args.repeats)
                    run = run_workload(w, paths[w.name], env, work, timeout_s=3600)
                    run.update(bare_frames_per_s=bare_fps, ratio=run["frames_per_s"] / bare_fps,
                               load_average=max(os.getloadavg()))
                    runs.append(run)
                row = {"workload": w.name, **median_runs(runs), "runs": runs}
                rows.append(row)
                print(f"{w.name} (median of {args.runs}): {row['frames_per_s']:.1f} frames/s, "
                      f"bare {row['bare_frames_per_s']:.1f}, ratio {row['ratio']:.2f}, "
                      f"peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
    text = table(rows, args.frame_batch, args.runs)
    arguments = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    path = write_results("ingest", {"rows": rows, "target_ratio": 0.8, "args": arguments}, text, args.results_dir)
    print(f"{machine()}\n\n{text}\n\nwrote {path}")
    return path


def main_modalities(args: argparse.Namespace) -> Path:
    """`--modalities N`: throughput with all modalities against visual only, on the same servers and videos."""
    duration_s = 20.0 if args.tiny else 60.0
    checkpoint = resolve_checkpoint(None, Path("build"))
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        repository = args.model_repository or export_checkpoint(checkpoint, "python", work / "repo").repository
        paths = [work / f"narrated-{i}.mp4" for i in range(args.modalities)]
        for i, path in enumerate(paths):
            write_narrated(path, duration_s, args.fps, i)
        with servers(work, repository) as stack:
            env = dict(os.environ, VIDSTRATA_REDIS_URL=stack.redis_url, VIDSTRATA_MILVUS_URI=stack.milvus_uri,
                       VIDSTRATA_TRITON_URL=stack.triton_url, VIDSTRATA_MILVUS_COLLECTION_PREFIX="bench_modalities_",
                       VIDSTRATA_WORKER_SAMPLE_FPS=str(args.sample_fps), VIDSTRATA_WORKER_FRAME_BATCH=str(args.frame_batch),
                       VIDSTRATA_WORKER_CONCURRENCY=str(args.concurrency), VIDSTRATA_WORKER_METRICS_PORT="0")
            rows = compare_modalities(paths, duration_s, env, work, 1 if args.tiny else args.runs)
    text = modalities_table(rows, len(paths), duration_s)
    arguments = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    path = write_results("ingest_modalities", {"rows": rows, "target_vs_visual_only": 0.5, "args": arguments},
                         text, args.results_dir)
    print(f"{machine()}\n\n{text}\n\nwrote {path}")
    return path


if __name__ == "__main__":
    main()
