"""`python -m bench.chaos`: submissions of good and bad videos while the stack is being broken; nothing may be lost.

Stack (vidstrata.stack launchers, all on this machine): redis-server with AOF, Milvus Lite, tritonserver (python
target of the default checkpoint), one Celery worker (`python -m vidstrata.workers.main`, 2 prefork children) and the gRPC
gateway. A client submits `--submissions` videos from the fault corpus (bench.faults: good files and bad ones)
through SubmitVideo, retrying while the gateway answers UNAVAILABLE, as a client would. Meanwhile faults are
injected at random times: SIGKILL of a worker child, and restarts of tritonserver, Milvus and redis-server.

At the end every submitted video must be READY exactly once (one video row, clip rows = its clip_count, no
orphan clips) or FAILED with a reason, and Search must answer. Figures: submissions, faults injected per kind,
lost (no status), duplicated (rows not exactly once), stuck (not READY/FAILED when the run settles), wrong
(a good file FAILED or a bad one READY), orphan clips, and the recovery time after each restart (from the fault
to the next video that becomes READY). Writes <results>/chaos.json and chaos.md.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from pymilvus import MilvusClient

from bench.common import RESULTS_DIR, write_results
from bench.faults import Fault, write_corpus
from vidstrata.media.photos import load_photo
from vidstrata.export.pipeline import export_checkpoint, resolve_checkpoint
from vidstrata.index.schema import collection_names
from vidstrata.inference.triton_encoder import TritonEncoder
from vidstrata.stack.gateway import GatewayProcess, start_gateway
from vidstrata.stack.milvus import start_milvus_lite
from vidstrata.stack.process import ManagedProcess, free_port
from vidstrata.stack.redis import find_or_install_redis, start_redis
from vidstrata.stack.triton import TritonPorts, start_tritonserver
from vidstrata.stack.worker import start_worker
from vidstrata.v1 import search_pb2, search_pb2_grpc

FAULT_KINDS = ("kill_child", "restart_triton", "restart_milvus", "restart_redis")
TERMINAL = (search_pb2.Video.READY, search_pb2.Video.FAILED)
# Short limits so that retries and redelivery happen within the run's patience.
WORKER_ENV = {
    "VIDSTRATA_WORKER_CONCURRENCY": "2",
    "VIDSTRATA_WORKER_FRAME_BATCH": "8",
    "VIDSTRATA_WORKER_RETRY_MAX": "40",
    "VIDSTRATA_WORKER_RETRY_BACKOFF_S": "0.5",
    "VIDSTRATA_WORKER_RETRY_BACKOFF_MAX_S": "4",
    "VIDSTRATA_WORKER_TASK_TIME_LIMIT_S": "50",
    "VIDSTRATA_WORKER_VISIBILITY_TIMEOUT_S": "60",
    "VIDSTRATA_WORKER_RESTORE_INTERVAL_S": "1",
    "VIDSTRATA_WORKER_MAX_WORKER_DEATHS": "6",
    "VIDSTRATA_WORKER_METRICS_PORT": "0",
}


@dataclass
class Stack:
    """The running servers, each restartable on its own port and data."""

    work: Path
    repository: Path
    redis_binary: str
    redis_port: int
    milvus_port: int
    triton_ports: TritonPorts
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    gateway: GatewayProcess | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            "VIDSTRATA_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "VIDSTRATA_MILVUS_URI": f"http://127.0.0.1:{self.milvus_port}",
            "VIDSTRATA_TRITON_URL": f"127.0.0.1:{self.triton_ports.grpc}",
            "VIDSTRATA_MILVUS_COLLECTION_PREFIX": "chaos_",
        }

    def start_redis(self) -> None:
        self.processes["redis"] = start_redis(self.redis_binary, self.work / "redis", self.redis_port)

    def start_milvus(self) -> None:
        self.processes["milvus"] = start_milvus_lite(self.work / "milvus", self.milvus_port, timeout_s=120)[0]

    def start_triton(self) -> None:
        process = start_tritonserver(self.repository, self.work / "triton", self.triton_ports)
        probe = TritonEncoder(self.env["VIDSTRATA_TRITON_URL"])
        try:
            process.wait_ready(probe.ready, timeout_s=300)
        finally:
            probe.close()
        self.processes["triton"] = process

    def start_worker(self) -> None:
        env = {**os.environ, **self.env, **WORKER_ENV, "PROMETHEUS_MULTIPROC_DIR": str(self.work / "metrics"),
               "VIDSTRATA_WORKER_LOCAL_ROOTS": str(self.work.resolve())}  # its own videos, no other local file
        (self.work / "metrics").mkdir(exist_ok=True)
        self.processes["worker"] = start_worker(env, self.work / "worker.log")

    def start_services(self) -> None:
        self.start_worker()
        self.gateway = start_gateway({**os.environ, **self.env}, self.work / "gateway.log")

    def restart(self, name: str) -> float:
        """Stop one server (SIGTERM; redis-server flushes its AOF) and start it again; seconds it was away."""
        started = time.monotonic()
        self.processes[name].stop()
        {"redis": self.start_redis, "milvus": self.start_milvus, "triton": self.start_triton}[name]()
        return time.monotonic() - started

    def kill_child(self, rng: random.Random) -> bool:
        """SIGKILL one prefork child of the worker, as the OOM killer would; False if none was found."""
        parent = self.processes["worker"].pid
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    children.append(int(stat.parent.name))
            except (OSError, ValueError, IndexError):
                continue
        if not children:
            return False
        os.kill(rng.choice(children), signal.SIGKILL)
        return True

    def ensure_worker(self) -> bool:
        """Start the worker again if its main process exited, as Kubernetes restarts a container; True if it did.

        It should not exit (workers.celery_app.RedisTransport survives a Redis restart): the figure says if it did.
        """
        if self.processes["worker"].alive():
            return False
        self.processes["worker"].stop()
        self.start_worker()
        return True

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        for name in ("worker", "triton", "milvus", "redis"):
            if name in self.processes:
                self.processes[name].stop()


class Client:
    """SubmitVideo, GetVideo and Search through the gateway, retrying while it answers UNAVAILABLE."""

    RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL)

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = search_pb2_grpc.VideoSearchStub(self.channel)
        self.retries = 0

    def call(self, method: str, request: Any, patience_s: float = 300.0) -> Any:
        deadline = time.monotonic() + patience_s
        while True:
            try:
                return getattr(self.stub, method)(request, timeout=10)
            except grpc.RpcError as exc:
                if exc.code() not in self.RETRIED or time.monotonic() > deadline:
                    raise
                self.retries += 1
                time.sleep(0.5)


@dataclass
class Injected:
    kind: str
    at: float  # wall clock (time.time), to compare with status updated_at
    away_s: float = 0.0


def inject_faults(stack: Stack, plan: list[tuple[float, str]], rng: random.Random, log: list[Injected]) -> None:
    """Run the fault plan: (seconds after start, kind), in order."""
    started = time.monotonic()
    for offset, kind in plan:
        while time.monotonic() - started < offset:
            if stack.ensure_worker():
                log.append(Injected("worker_restarted", time.time()))
            time.sleep(0.2)
        at = time.time()
        if kind == "kill_child":
            if stack.kill_child(rng):
                log.append(Injected(kind, at))
            continue
        away = stack.restart(kind.removeprefix("restart_"))
        log.append(Injected(kind, at, away))
        print(f"  {kind}: back after {away:.1f} s", flush=True)


def check_index(stack: Stack, statuses: dict[str, search_pb2.Video]) -> dict[str, Any]:
    """Rows per video in Milvus against the statuses: duplicated and orphan clips."""
    names = collection_names(stack.env["VIDSTRATA_MILVUS_COLLECTION_PREFIX"])
    client = MilvusClient(stack.env["VIDSTRATA_MILVUS_URI"], dedicated=True)
    try:
        videos = client.query(names.videos, filter='video_id != ""', output_fields=["video_id", "clip_count"],
                              limit=16384)
        clips = client.query(names.clips, filter='video_id != ""', output_fields=["video_id"], limit=16384)
    finally:
        client.close()
    video_rows: dict[str, list[int]] = {}
    for row in videos:
        video_rows.setdefault(row["video_id"], []).append(int(row["clip_count"]))
    clip_rows: dict[str, int] = {}
    for row in clips:
        clip_rows[row["video_id"]] = clip_rows.get(row["video_id"], 0) + 1
    duplicated, orphans = [], 0
    for video_id, status in statuses.items():
        rows = video_rows.get(video_id, [])
        if status.status == search_pb2.Video.READY:
            if len(rows) != 1 or clip_rows.get(video_id, 0) != rows[0] or rows[0] != status.clip_count:
                duplicated.append(f"{video_id}: {len(rows)} video rows, {clip_rows.get(video_id, 0)} clips, "
                                  f"status says {status.clip_count}")
        elif rows or clip_rows.get(video_id):
            duplicated.append(f"{video_id}: {status.status} but {len(rows)} video rows in the index")
    orphans = sum(n for video_id, n in clip_rows.items() if video_id not in video_rows)
    return {"duplicated": duplicated, "orphan_clips": orphans}


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    corpus = [f for f in write_corpus(work / "corpus", load_photo) if f.name != "banner.mkv"]
    repository = args.model_repository or export_checkpoint(resolve_checkpoint(None, Path("build")), "python",
                                                            work / "repo").repository
    stack = Stack(work, repository, find_or_install_redis()[0], free_port(), free_port(), TritonPorts.free())
    with ExitStack() as cleanup:
        cleanup.callback(stack.stop)
        stack.start_redis()
        stack.start_milvus()
        stack.start_triton()
        stack.start_services()
        assert stack.gateway is not None
        client = Client(stack.gateway.address)
        plan_kinds = [k for k in FAULT_KINDS for _ in range(args.faults_per_kind)]
        kills = [("kill_child", rng.uniform(0, args.window_s)) for _ in range(args.kills)]
        restarts = sorted(rng.sample(range(1, 1000), len(plan_kinds)))
        plan = sorted([(t, k) for k, t in kills]
                      + [(args.window_s * r / 1000, k) for r, k in zip(restarts, rng.sample(plan_kinds, len(plan_kinds)))])
        injected: list[Injected] = []
        submitted: dict[str, Fault] = {}
        choices = [rng.choice(corpus) for _ in range(args.submissions)]
        started = time.monotonic()

        def submit_all() -> None:
            for i, fault in enumerate(choices):
                video_id = f"chaos-{i:04d}"
                client.call("SubmitVideo", search_pb2.SubmitVideoRequest(video_id=video_id, uri=fault.path.as_uri()))
                submitted[video_id] = fault
                time.sleep(max(0.0, args.window_s * (i + 1) / args.submissions - (time.monotonic() - started)))

        # Servers are restarted from the main thread: a child gets SIGTERM when the *thread* that started it
        # ends (PR_SET_PDEATHSIG in vidstrata.stack.process), so the submissions run in the other one.
        submitter = threading.Thread(target=submit_all, name="submit", daemon=True)
        submitter.start()
        inject_faults(stack, plan, rng, injected)
        submitter.join()
        print(f"submitted {len(submitted)} in {time.monotonic() - started:.0f} s; settling", flush=True)
        settle_deadline = time.monotonic() + args.settle_s
        statuses: dict[str, search_pb2.Video] = {}
        lost: list[str] = []
        while True:
            lost = []
            for video_id in submitted:
                try:
                    statuses[video_id] = client.call("GetVideo", search_pb2.GetVideoRequest(video_id=video_id))
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    lost.append(video_id)
            pending = [v for v, s in statuses.items() if s.status not in TERMINAL]
            if not pending or time.monotonic() > settle_deadline:
                break
            if stack.ensure_worker():
                injected.append(Injected("worker_restarted", time.time()))
            time.sleep(1.0)
        settled_s = time.monotonic() - started
        stuck = [f"{v}: {statuses[v].status} {statuses[v].stage}" for v in pending]
        wrong = [f"{v}: {submitted[v].name} {search_pb2.Video.Status.Name(s.status)} {s.reason!r}"
                 for v, s in statuses.items() if s.status in TERMINAL
                 and (s.status == search_pb2.Video.READY) != submitted[v].ready]
        no_reason = [v for v, s in statuses.items() if s.status == search_pb2.Video.FAILED and not s.reason]
        index = check_index(stack, statuses)
        reply = client.call("Search", search_pb2.SearchRequest(query="a rocket on a launch pad", top_k=5))
        ready = {v for v, s in statuses.items() if s.status == search_pb2.Video.READY}
        search_ok = bool(reply.hits) and all(hit.video_id in ready for hit in reply.hits)
        ready_times = sorted(s.updated_at.ToSeconds() + s.updated_at.nanos / 1e9 for v, s in statuses.items()
                             if s.status == search_pb2.Video.READY)
        recoveries = []
        for fault in injected:
            if not fault.kind.startswith("restart_"):
                continue
            after = next((t for t in ready_times if t > fault.at + fault.away_s), None)
            recoveries.append({"kind": fault.kind, "away_s": fault.away_s,
                               "recovery_s": None if after is None else after - fault.at})
    return {
        "submissions": len(submitted), "window_s": args.window_s, "seconds": settled_s,
        "faults": {k: sum(f.kind == k for f in injected) for k in FAULT_KINDS},
        "worker_restarts": sum(f.kind == "worker_restarted" for f in injected),
        "ready": len(ready), "failed": sum(s.status == search_pb2.Video.FAILED for s in statuses.values()),
        "lost": lost, "stuck": stuck, "duplicated": index["duplicated"], "orphan_clips": index["orphan_clips"],
        "wrong": wrong, "failed_without_reason": no_reason, "search_ok": search_ok,
        "client_retries": client.retries, "recoveries": recoveries,
    }


def table(result: dict[str, Any]) -> str:
    faults = ", ".join(f"{k} {n}" for k, n in result["faults"].items())
    lines = [
        "| submissions | READY | FAILED | lost | duplicated | stuck | wrong outcome | orphan clips | Search |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {result['submissions']} | {result['ready']} | {result['failed']} | {len(result['lost'])} | "
        f"{len(result['duplicated'])} | {len(result['stuck'])} | {len(result['wrong'])} | {result['orphan_clips']} | "
        f"{'works' if result['search_ok'] else 'FAILS'} |",
        "",
        f"Faults injected: {faults}. The worker's main process exited {result['worker_restarts']} times (started "
        f"again, as Kubernetes would). Submissions over {result['window_s']:.0f} s; settled after "
        f"{result['seconds']:.0f} s; the client retried {result['client_retries']} calls answered UNAVAILABLE.",
        "",
        "| restart | server away (s) | recovery: fault to next READY (s) |",
        "|---|---|---|",
    ]
    for r in result["recoveries"]:
        recovery = "no READY after it" if r["recovery_s"] is None else f"{r['recovery_s']:.1f}"
        lines.append(f"| {r['kind']} | {r['away_s']:.1f} | {recovery} |")
    for name in ("lost", "duplicated", "stuck", "wrong", "failed_without_reason"):
        if result[name]:
            lines += ["", f"{name}: " + "; ".join(result[name][:10])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=120)
    parser.add_argument("--window-s", type=float, default=240.0, help="seconds over which submissions and faults spread")
    parser.add_argument("--faults-per-kind", type=int, default=2, help="restarts of each server")
    parser.add_argument("--kills", type=int, default=8, help="SIGKILLs of worker children")
    parser.add_argument("--settle-s", type=float, default=300.0, help="how long to wait for every video to finish")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--model-repository", type=Path, help="a python-target repository (skips the export)")
    parser.add_argument("--tiny", action="store_true", help="short run: 24 submissions, one fault of each kind")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.tiny:
        args.submissions, args.window_s, args.faults_per_kind, args.kills = 24, 60.0, 1, 2
    with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp:
        result = run(args, Path(tmp))
    text = table(result)
    print(text)
    write_results("chaos", result, text, args.results_dir)
    return result


if __name__ == "__main__":
    main()
