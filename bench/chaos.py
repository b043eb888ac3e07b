"""`python -m bench.chaos`: submissions of good and bad videos while the stack is being broken; every attempted
submission is accounted for and nothing may be lost.

Stack (vidstrata.stack launchers, all on this machine): redis-server with AOF, Milvus Lite, tritonserver (python
target of the default checkpoint), one Celery worker (`python -m vidstrata.workers.main` with `--concurrency` prefork
children: videos ingested at once) and the gRPC gateway. A client submits `--submissions` videos from the fault corpus
(bench.faults: good files and bad ones) through SubmitVideo, spread over `--window-s` with up to `--concurrency` calls
in flight, retrying while the gateway answers UNAVAILABLE as a client would, for at most `--patience-s`. Meanwhile
faults are injected at random times: SIGKILL of a worker child, and restarts of tritonserver, Milvus and redis-server.

Every attempted submission is counted: accepted, or refused with the gRPC code of its last answer (attempted =
accepted + refused). When the run settles every accepted video must be READY exactly once (one video row, clip rows =
its clip_count, no orphan clips) or FAILED with a reason, and Search must answer. Figures: the outcomes (READY,
FAILED, lost: no status, stuck: not READY/FAILED when the run settles, duplicated: rows not exactly once, wrong: a good
file FAILED or a bad one READY, orphan clips), the faults as they ran (never the parameters), and the recovery after
each restart (from the fault to the next video that becomes READY once the server is back).

The raw result is `<results-dir>/chaos.json` (default: a new folder under docs/chaos/): the command line and
settings, the machine, the load average during the run, every submission's outcome, every fault with its times and
the recoveries. The table (`chaos.md`, and what is printed) is generated from that JSON alone; `--table FILE` prints
it again from a kept result.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import grpc
from pymilvus import MilvusClient

from bench.common import machine, write_results
from bench.faults import write_corpus
from vidstrata.media.photos import load_photo
from vidstrata.export.pipeline import export_checkpoint, resolve_checkpoint
from vidstrata.index.schema import collection_names
from vidstrata.inference.triton_encoder import TritonEncoder
from vidstrata.stack.gateway import GatewayProcess, start_gateway
from vidstrata.stack.milvus import start_milvus_lite
from vidstrata.stack.process import ManagedProcess, children_of, free_port
from vidstrata.stack.redis import find_or_install_redis, start_redis
from vidstrata.stack.triton import TritonPorts, start_tritonserver
from vidstrata.stack.worker import start_worker
from vidstrata.v1 import search_pb2, search_pb2_grpc

FAULT_KINDS = ("kill_child", "restart_triton", "restart_milvus", "restart_redis")
TERMINAL = (search_pb2.Video.READY, search_pb2.Video.FAILED)
RESULTS_ROOT = Path("docs/chaos")
TINY = {"submissions": 24, "window_s": 60.0, "concurrency": 2, "faults_per_kind": 1, "kills": 2}


def worker_env(concurrency: int) -> dict[str, str]:
    """The worker's settings: `concurrency` videos at once, and short limits so that retries and redelivery happen
    within the run's patience; the time limit of one ingest (50 s up to 5 videos at once) grows by 10 s for each
    video beyond, since they share the machine's cores."""
    time_limit = 10 * max(5, concurrency)
    return {
        "VIDSTRATA_WORKER_CONCURRENCY": str(concurrency),
        "VIDSTRATA_WORKER_FRAME_BATCH": "8",
        "VIDSTRATA_WORKER_RETRY_MAX": "40",
        "VIDSTRATA_WORKER_RETRY_BACKOFF_S": "0.5",
        "VIDSTRATA_WORKER_RETRY_BACKOFF_MAX_S": "4",
        "VIDSTRATA_WORKER_TASK_TIME_LIMIT_S": str(time_limit),
        "VIDSTRATA_WORKER_VISIBILITY_TIMEOUT_S": str(time_limit + 10),
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
    worker_env: dict[str, str]
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
        env = {**os.environ, **self.env, **self.worker_env, "PROMETHEUS_MULTIPROC_DIR": str(self.work / "metrics"),
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

    def kill_child(self, rng: random.Random) -> int | None:
        """SIGKILL one prefork child of the worker, as the OOM killer would; its pid, or None if none was found."""
        children = children_of(self.processes["worker"].pid)
        if not children:
            return None
        pid = rng.choice(children)
        os.kill(pid, signal.SIGKILL)
        return pid

    def ensure_worker(self) -> str | None:
        """Start the worker again if its main process exited, as Kubernetes restarts a container; if it did, its exit
        code and the end of its log (why it exited), else None.

        It should not exit (workers.celery_app.RedisTransport survives a Redis restart): the figure says if it did.
        """
        worker = self.processes["worker"]
        if worker.alive():
            return None
        assert worker.proc is not None
        why = f"exit code {worker.proc.returncode}; its log ended with:\n{worker.log_tail(80)}"
        worker.stop()
        self.start_worker()
        return why

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
        self.retried: Counter[str] = Counter()  # answers retried, per gRPC code
        self._lock = threading.Lock()

    def call(self, method: str, request: Any, patience_s: float = 300.0) -> Any:
        """The reply; the last grpc.RpcError when its code is not retried or `patience_s` has passed."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                return getattr(self.stub, method)(request, timeout=10)
            except grpc.RpcError as exc:
                if exc.code() not in self.RETRIED or time.monotonic() > deadline:
                    raise
                with self._lock:
                    self.retried[exc.code().name] += 1
                time.sleep(0.5)


@dataclass
class Attempt:
    """One attempted submission and what became of it."""

    video_id: str
    file: str  # the fault corpus file
    expect_ready: bool
    at_s: float = 0.0  # seconds after the run started
    answered_s: float = 0.0
    code: str = ""  # gRPC code of the final answer: OK (accepted) or the refusal's
    status: str = ""  # after settling: READY, FAILED, a non-terminal status (stuck), or NOT_FOUND
    stage: str = ""
    reason: str = ""
    updated_at: float = 0.0  # wall clock of the status's last update


@dataclass
class Injected:
    """One fault as it ran."""

    kind: str  # a FAULT_KINDS entry, or worker_restarted (the bench started an exited worker again)
    at_s: float  # seconds after the run started
    wall: float  # time.time() at the fault, to compare with status updated_at
    away_s: float = 0.0  # restarts: from the stop to ready again
    done: bool = True  # False: a kill found no worker child
    pid: int | None = None  # kills: the child killed
    detail: str = ""  # worker_restarted: why the worker had exited


class LoadSampler:
    """The 1-minute load average every `every_s` while the run lasts (other work on the machine shows here)."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(round(os.getloadavg()[0], 2))
            if self._stop.wait(self.every_s):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        return {"every_s": self.every_s, "samples": self.samples, "min": min(self.samples), "max": max(self.samples),
                "median": statistics.median(self.samples)}


def fault_plan(args: argparse.Namespace, rng: random.Random) -> list[tuple[float, str]]:
    """(seconds after start, kind), in order: `kills` SIGKILLs and `faults_per_kind` restarts of each server, at
    random times within the window."""
    restarts = [k for k in FAULT_KINDS[1:] for _ in range(args.faults_per_kind)]
    kills = [(rng.uniform(0, args.window_s), "kill_child") for _ in range(args.kills)]
    slots = sorted(rng.sample(range(1, 1000), len(restarts)))
    return sorted(kills + [(args.window_s * s / 1000, k) for s, k in zip(slots, rng.sample(restarts, len(restarts)))])


def inject_faults(stack: Stack, plan: list[tuple[float, str]], rng: random.Random, started: float,
                  log: list[Injected]) -> None:
    """Run the fault plan in order, from the main thread (see `run`); every fault is logged, a missed kill too."""
    for offset, kind in plan:
        while time.monotonic() - started < offset:
            if why := stack.ensure_worker():
                log.append(Injected("worker_restarted", time.monotonic() - started, time.time(), detail=why))
            time.sleep(0.2)
        fault = Injected(kind, time.monotonic() - started, time.time())
        if kind == "kill_child":
            fault.pid = stack.kill_child(rng)
            fault.done = fault.pid is not None
        else:
            fault.away_s = stack.restart(kind.removeprefix("restart_"))
            print(f"  {kind} at {fault.at_s:.0f} s: back after {fault.away_s:.1f} s", flush=True)
        log.append(fault)


def check_index(stack: Stack, statuses: dict[str, search_pb2.Video]) -> dict[str, Any]:
    """Rows per video in Milvus against the statuses: duplicated (rows not exactly once, or rows of a video with
    no status) and orphan clips."""
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
    clip_rows = Counter(row["video_id"] for row in clips)
    duplicated = []
    for video_id, status in statuses.items():
        rows = video_rows.get(video_id, [])
        if status.status == search_pb2.Video.READY:
            if len(rows) != 1 or clip_rows[video_id] != rows[0] or rows[0] != status.clip_count:
                duplicated.append(f"{video_id}: {len(rows)} video rows, {clip_rows[video_id]} clips, "
                                  f"status says {status.clip_count}")
        elif rows or clip_rows[video_id]:
            duplicated.append(f"{video_id}: {search_pb2.Video.Status.Name(status.status)} but {len(rows)} video "
                              "rows in the index")
    duplicated += [f"{video_id}: no status but {len(rows)} video rows" for video_id, rows in video_rows.items()
                   if video_id not in statuses]
    orphans = sum(n for video_id, n in clip_rows.items() if video_id not in video_rows)
    return {"duplicated": duplicated, "orphan_clips": orphans}


def settle(client: Client, stack: Stack, attempts: list[Attempt], settle_s: float, started: float,
           log: list[Injected]) -> dict[str, search_pb2.Video]:
    """Poll every attempted video (a refused one too: a deadline may have passed after it was queued) until each
    that has a status is READY or FAILED, or `settle_s` passes; fills each attempt's status."""
    deadline = time.monotonic() + settle_s
    statuses: dict[str, search_pb2.Video] = {}
    while True:
        for attempt in attempts:
            try:
                statuses[attempt.video_id] = client.call("GetVideo", search_pb2.GetVideoRequest(video_id=attempt.video_id))
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
        if all(s.status in TERMINAL for s in statuses.values()) or time.monotonic() > deadline:
            break
        if why := stack.ensure_worker():
            log.append(Injected("worker_restarted", time.monotonic() - started, time.time(), detail=why))
        time.sleep(1.0)
    for attempt in attempts:
        status = statuses.get(attempt.video_id)
        if status is None:
            attempt.status = "NOT_FOUND"
            continue
        attempt.status = search_pb2.Video.Status.Name(status.status)
        attempt.stage, attempt.reason = status.stage, status.reason
        attempt.updated_at = status.updated_at.ToSeconds() + status.updated_at.nanos / 1e9
    return statuses


def recoveries(faults: list[Injected], attempts: list[Attempt]) -> list[dict[str, Any]]:
    """For each restart: seconds from the fault to the first READY after the server was back (None: no READY)."""
    ready_times = sorted(a.updated_at for a in attempts if a.status == "READY")
    out = []
    for fault in faults:
        if fault.kind.startswith("restart_"):
            after = next((t for t in ready_times if t > fault.wall + fault.away_s), None)
            out.append({"kind": fault.kind, "at_s": fault.at_s, "away_s": fault.away_s,
                        "recovery_s": None if after is None else after - fault.wall})
    return out


def memory_gib() -> float:
    """The machine's memory (MemTotal), GiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One chaos run on a fresh stack in `work`; the raw result (see the module's docstring)."""
    rng = random.Random(args.seed)
    corpus = [f for f in write_corpus(work / "corpus", load_photo) if f.name != "banner.mkv"]
    repository = args.model_repository or export_checkpoint(resolve_checkpoint(None, Path("build")), "python",
                                                            work / "repo").repository
    stack = Stack(work, repository, find_or_install_redis()[0], free_port(), free_port(), TritonPorts.free(),
                  worker_env(args.concurrency))
    began = datetime.now(timezone.utc)
    with ExitStack() as cleanup:
        cleanup.callback(stack.stop)
        stack.start_redis()
        stack.start_milvus()
        stack.start_triton()
        stack.start_services()
        assert stack.gateway is not None
        client = Client(stack.gateway.address)
        plan = fault_plan(args, rng)
        files = [rng.choice(corpus) for _ in range(args.submissions)]
        attempts = [Attempt(f"chaos-{i:04d}", f.name, f.ready) for i, f in enumerate(files)]
        faults: list[Injected] = []
        load = LoadSampler()
        load.start()
        started = time.monotonic()

        def submit(i: int) -> None:
            attempt = attempts[i]
            time.sleep(max(0.0, args.window_s * i / args.submissions - (time.monotonic() - started)))
            attempt.at_s = time.monotonic() - started
            request = search_pb2.SubmitVideoRequest(video_id=attempt.video_id, uri=files[i].path.as_uri())
            try:
                client.call("SubmitVideo", request, args.patience_s)
                attempt.code = "OK"
            except grpc.RpcError as exc:
                attempt.code = exc.code().name
            attempt.answered_s = time.monotonic() - started

        # Servers are restarted from the main thread: a child gets SIGTERM when the *thread* that started it ends
        # (PR_SET_PDEATHSIG in vidstrata.stack.process), so the submissions run in a pool.
        with ThreadPoolExecutor(args.concurrency, thread_name_prefix="submit") as pool:
            submitted = [pool.submit(submit, i) for i in range(args.submissions)]
            inject_faults(stack, plan, rng, started, faults)
            for future in submitted:
                future.result()
        print(f"attempted {len(attempts)} submissions in {time.monotonic() - started:.0f} s; settling", flush=True)
        statuses = settle(client, stack, attempts, args.settle_s, started, faults)
        settled_s = time.monotonic() - started
        index = check_index(stack, statuses)
        reply = client.call("Search", search_pb2.SearchRequest(query="a rocket on a launch pad", top_k=5))
        ready = {a.video_id for a in attempts if a.status == "READY"}
        search_ok = bool(reply.hits) and all(hit.video_id in ready for hit in reply.hits)
        load.stop()
    accepted = [a for a in attempts if a.code == "OK"]
    found = [a for a in attempts if a.status != "NOT_FOUND"]
    return {
        "command": shlex.join(["python", "-m", "bench.chaos", *args.argv]),
        "settings": {name: getattr(args, name) for name in ("submissions", "window_s", "concurrency", "patience_s",
                                                            "faults_per_kind", "kills", "settle_s", "seed", "tiny")}
                    | {"worker_env": stack.worker_env},
        "machine": {**machine(), "memory_gib": memory_gib()},
        "started_at": began.isoformat(timespec="seconds"),
        "seconds": settled_s,
        "load_average_1m": load.summary(),
        "attempted": len(attempts),
        "accepted": len(accepted),
        "refused": dict(Counter(a.code for a in attempts if a.code != "OK")),
        "outcomes": dict(Counter("lost" if a.status == "NOT_FOUND" else a.status if a.status in ("READY", "FAILED")
                                 else "stuck" for a in accepted)),
        "lost": [a.video_id for a in accepted if a.status == "NOT_FOUND"],
        "stuck": [f"{a.video_id}: {a.status} {a.stage}" for a in found if a.status not in ("READY", "FAILED")],
        "refused_but_queued": [f"{a.video_id}: {a.code}, then {a.status}" for a in found if a.code != "OK"],
        "duplicated": index["duplicated"],
        "orphan_clips": index["orphan_clips"],
        "wrong": [f"{a.video_id}: {a.file} {a.status} {a.reason!r}" for a in accepted
                  if a.status in ("READY", "FAILED") and (a.status == "READY") != a.expect_ready],
        "failed_without_reason": [a.video_id for a in found if a.status == "FAILED" and not a.reason],
        "search_ok": search_ok,
        "faults": {k: sum(f.kind == k and f.done for f in faults) for k in FAULT_KINDS},
        "kills_without_a_child": sum(f.kind == "kill_child" and not f.done for f in faults),
        "worker_restarts": sum(f.kind == "worker_restarted" for f in faults),
        "client_retries": dict(sorted(client.retried.items())),
        "recoveries": recoveries(faults, attempts),
        "fault_log": [asdict(f) for f in faults],
        "submissions": [asdict(a) for a in attempts],
    }


def _count(result: dict[str, Any], outcome: str) -> int:
    return int(result["outcomes"].get(outcome, 0))


def table(result: dict[str, Any]) -> str:
    """The Markdown report of one run, from its JSON result alone."""
    s, m, load = result["settings"], result["machine"], result["load_average_1m"]
    refused = sum(result["refused"].values())
    refused_cell = str(refused) + (f" ({', '.join(f'{k} {n}' for k, n in result['refused'].items())})" if refused else "")
    faults = ", ".join(f"{k} {n}" for k, n in result["faults"].items())
    retries = ", ".join(f"{k} {n}" for k, n in result["client_retries"].items()) or "none"
    lines = [
        f"Command: `{result['command']}` ({s['submissions']} submissions over {s['window_s']:.0f} s, concurrency "
        f"{s['concurrency']}: submissions in flight and videos ingested at once; {s['faults_per_kind']} restart(s) of "
        f"each server, {s['kills']} SIGKILL(s) planned; seed {s['seed']}). Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB; started {result['started_at']}. Load average (1 min) during the run: "
        f"{load['min']:.1f} to {load['max']:.1f}, median {load['median']:.1f}.",
        "",
        "| attempted | accepted | refused | READY | FAILED | lost | stuck | duplicated | wrong outcome | orphan clips "
        "| Search |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {result['attempted']} | {result['accepted']} | {refused_cell} | {_count(result, 'READY')} | "
        f"{_count(result, 'FAILED')} | {len(result['lost'])} | {len(result['stuck'])} | {len(result['duplicated'])} | "
        f"{len(result['wrong'])} | {result['orphan_clips']} | {'works' if result['search_ok'] else 'FAILS'} |",
        "",
        f"Faults that ran: {faults}" + (f" ({result['kills_without_a_child']} kill(s) found no child)"
                                        if result["kills_without_a_child"] else "")
        + f". The worker's main process exited {result['worker_restarts']} times (started again, as Kubernetes "
        f"would). Settled {result['seconds']:.0f} s after the first submission; the client retried: {retries}.",
        "",
        "| restart | at (s) | server away (s) | recovery: fault to next READY (s) |",
        "|---|---|---|---|",
    ]
    for r in result["recoveries"]:
        recovery = "no READY after it" if r["recovery_s"] is None else f"{r['recovery_s']:.1f}"
        lines.append(f"| {r['kind']} | {r['at_s']:.0f} | {r['away_s']:.1f} | {recovery} |")
    for name in ("lost", "stuck", "duplicated", "wrong", "failed_without_reason", "refused_but_queued"):
        if result[name]:
            lines += ["", f"{name}: " + "; ".join(result[name][:10])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=120)
    parser.add_argument("--window-s", type=float, default=240.0, help="seconds over which submissions and faults spread")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="videos the worker ingests at once (prefork children), and submissions in flight at once")
    parser.add_argument("--patience-s", type=float, default=120.0,
                        help="how long the client retries one submission answered UNAVAILABLE before it counts as refused")
    parser.add_argument("--faults-per-kind", type=int, default=2, help="restarts of each server")
    parser.add_argument("--kills", type=int, default=8, help="SIGKILLs of worker children")
    parser.add_argument("--settle-s", type=float, default=300.0, help="how long to wait for every video to finish")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--model-repository", type=Path, help="a python-target repository (skips the export)")
    parser.add_argument("--tiny", action="store_true",
                        help="short run: " + ", ".join(f"{k.replace('_', '-')} {v:g}" for k, v in TINY.items()))
    parser.add_argument("--results-dir", type=Path,
                        help=f"where chaos.json and chaos.md go (default: a new folder under {RESULTS_ROOT}/)")
    parser.add_argument("--table", type=Path, metavar="CHAOS_JSON", help="print the table of a kept result and exit")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.table:
        result = json.loads(args.table.read_text())
        print(table(result))
        return result
    if args.tiny:
        for name, value in TINY.items():
            setattr(args, name, value)
    results_dir = args.results_dir or RESULTS_ROOT / datetime.now(timezone.utc).strftime("run-%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp:
        result = json.loads(json.dumps(run(args, Path(tmp))))  # the table sees exactly what the JSON keeps
    text = table(result)
    print(text)
    path = write_results("chaos", result, text, results_dir)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
