"""`vidstrata up` end to end: the real stack starts, the CLI and grpcurl work against it, the README's
commands run as written, SIGTERM leaves no process behind, and the data survives a restart."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from vidstrata.media.photos import load_photo
from vidstrata.media.synthetic import write_scene_video
from vidstrata.stack.process import ManagedProcess, free_port, port_open

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RULES = ROOT / "k8s" / "base" / "monitoring" / "prometheus-rules.yaml"
BIN = Path(sys.executable).parent
DEFAULT_GATEWAY = "127.0.0.1:50051"


def up_env(data_dir: Path, repository: Path) -> dict[str, str]:
    ports = {name: str(free_port()) for name in (
        "REDIS_PORT", "MILVUS_PORT", "TRITON_HTTP_PORT", "TRITON_GRPC_PORT", "TRITON_METRICS_PORT",
        "GATEWAY_PORT", "GATEWAY_METRICS_PORT", "WORKER_METRICS_PORT")}
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", VIDSTRATA_UP_DATA_DIR=str(data_dir),
               VIDSTRATA_UP_MODEL_REPOSITORY=str(repository), PYTHONUNBUFFERED="1",
               VIDSTRATA_UP_MEDIA_DIR=str(data_dir.parent))  # the test's own videos: the worker may read them
    env.update({f"VIDSTRATA_UP_{k}": v for k, v in ports.items()})
    env["VIDSTRATA_GATEWAY_ADDRESS"] = f"127.0.0.1:{ports['GATEWAY_PORT']}"
    return env


class Up:
    """`vidstrata up` in a subprocess whose output we watch."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc = subprocess.Popen([str(BIN / "vidstrata"), "up"], env=env, stdout=open(log, "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output():
            assert self.proc.poll() is None, f"vidstrata up exited:\n{self.output()[-4000:]}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout_s}s:\n{self.output()[-4000:]}"
            time.sleep(0.5)

    def stop(self) -> int:
        """SIGTERM, as a person's Ctrl-C would; SIGKILL only if it hangs (children then die with it)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "vidstrata"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def processes_using(marker: str) -> list[str]:
    """Live (non-zombie) processes whose command line or environment mentions `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            blob = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in blob:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")[:200]
            found.append(f"{proc.name}: {command!r}")
    return found


def readme_commands() -> list[str]:
    """Every `$ vidstrata ...` and `$ grpcurl ...` line of the README's console blocks."""
    return [line[2:].strip() for line in README.read_text().splitlines()
            if line.startswith("$ vidstrata ") or line.startswith("$ grpcurl ")]


def prometheus_scrapes_the_stack(env: dict[str, str], work: Path) -> None:
    """A real Prometheus scrapes the gateway and the worker with our recording rules, and a rule yields a value."""
    binary = Path("/usr/bin/prometheus")
    if not binary.exists():
        pytest.skip("Debian's prometheus is not installed (make test installs it)")
    groups = yaml.safe_load(RULES.read_text())["spec"]["groups"]
    for group in groups:
        group["interval"] = "1s"
    work.mkdir()
    (work / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    targets = {"gateway": env["VIDSTRATA_UP_GATEWAY_METRICS_PORT"], "worker": env["VIDSTRATA_UP_WORKER_METRICS_PORT"]}
    (work / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(work / "rules.yml")],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": "test"}}]}
                           for job, port in targets.items()],
    }))
    port = free_port()
    server = ManagedProcess("prometheus", [str(binary), f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
                                           f"--web.listen-address=127.0.0.1:{port}"], work / "prometheus.log").start()
    try:
        server.wait_ready(lambda: port_open(port), timeout_s=60)

        def query(promql: str) -> list[dict]:
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
            return json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["result"]

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            cli(env, "search", "a bike", "-k", "2")
            p50 = [r for r in query('rpc:vidstrata_gateway_request_duration_seconds:p50{rpc="Search"}') if r["value"][1] != "NaN"]
            up = {r["metric"]["job"] for r in query("up == 1")}
            if p50 and up == {"gateway", "worker"}:
                assert 0 < float(p50[0]["value"][1]) < 10
                return
            time.sleep(1)
        raise AssertionError(f"no Search p50 from the recording rule; targets up: {up}\n{server.log_tail()}")
    finally:
        server.stop()


def loaded_torch(pid: int) -> list[str]:
    """The torch libraries mapped into process pid (empty when it never imported torch)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({line.split()[-1] for line in maps.splitlines() if "libtorch" in line or "/torch/_C" in line})


SAMPLES = ("bigbuckbunny", "bikes", "carphone", "cafe_tour")


def test_up_cli_grpcurl_readme_sigterm_and_restart(default_checkpoint, tmp_path):
    data = tmp_path / "data"
    repository = tmp_path / "model_repository"  # missing: the first run exports it, as `make up`'s first run does
    env = up_env(data, repository)
    gateway = env["VIDSTRATA_GATEWAY_ADDRESS"]
    video = tmp_path / "scenes.mp4"
    spans = write_scene_video(video, [load_photo("rocket"), load_photo("chelsea"), load_photo("coffee")], [4.0, 4.0, 4.0])

    up = Up(env, tmp_path / "up.log")
    try:
        up.wait_for("vidstrata is up", timeout_s=600)
        assert "exporting the default encoders" in up.output() and (repository / "text_encoder" / "config.pbtxt").is_file()
        for component in ("redis", "milvus-lite", "tritonserver", "worker", "gateway"):
            assert re.search(rf"^\s+{component}\s+\S+\s+ready", up.output(), re.M), up.output()

        second = cli(env, "up", timeout=60)
        assert second.returncode == 1 and "already running" in second.stdout + second.stderr

        ingested = cli(env, "ingest", str(video), "--metadata", "source=test", "--wait")
        assert ingested.returncode == 0, ingested.stderr + ingested.stdout
        assert "1 ready, 0 failed" in ingested.stdout

        found = cli(env, "search", "a cat", "-k", "3", "--filter", 'meta.source == "test"', "--json")
        assert found.returncode == 0, found.stderr
        hits = json.loads(found.stdout)["hits"]
        assert len(hits) == 1 and hits[0]["best_clip"]["start_s"] == pytest.approx(spans[1][0], abs=1.0)

        listing = subprocess.run([str(BIN / "grpcurl"), "-plaintext", gateway, "list"], capture_output=True, text=True, timeout=60)
        assert "vidstrata.v1.VideoSearch" in listing.stdout, listing.stderr
        reply = subprocess.run([str(BIN / "grpcurl"), "-plaintext", "-d", json.dumps({"query": "a rocket", "top_k": 2}),
                                gateway, "vidstrata.v1.VideoSearch/Search"], capture_output=True, text=True, timeout=60)
        assert reply.returncode == 0 and '"hits"' in reply.stdout, reply.stderr

        for command in readme_commands():
            argv = shlex.split(command.replace(DEFAULT_GATEWAY, gateway), comments=True)  # a `# ...` explains
            argv[0] = str(BIN / argv[0])
            result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, f"README command failed: {command}\n{result.stdout}\n{result.stderr}"

        prometheus_scrapes_the_stack(env, tmp_path / "prometheus")

        # Each sample is reported as it finishes (READY with its clips and duration, or FAILED with the reason),
        # then one line says the first search is ready.
        up.wait_for("samples indexed", timeout_s=600)
        output = up.output()
        for sample in SAMPLES:
            assert re.search(rf"^  sample {sample}\s+(READY\s+[1-9]\d* clips?, \d+\.\d s|FAILED\s+\S)", output, re.M), output
        assert re.search(r"^ready: [1-4] of 4 samples indexed.*; try: \S*vidstrata search \"", output, re.M), output
        # The export ran in a child: the supervisor, alive as long as the stack, never loaded torch.
        assert loaded_torch(up.proc.pid) == []

        assert up.stop() == 0
    finally:
        if up.proc.poll() is None:
            up.stop()
    time.sleep(1)
    assert processes_using(str(data)) == [], "processes left behind after SIGTERM"

    again = Up(env, tmp_path / "up2.log")
    try:
        again.wait_for("vidstrata is up", timeout_s=300)
        again.wait_for("try: ", timeout_s=60)  # the index holds videos: no samples, the first search is ready now
        assert "ingesting sample" not in again.output() and "exporting" not in again.output()
        status = cli(env, "stats")
        assert status.returncode == 0 and re.search(r"videos: [1-9]", status.stdout), status.stdout + status.stderr
        found = cli(env, "search", "a cat", "--filter", 'meta.source == "test"', "--json")
        assert found.returncode == 0, found.stderr  # the first search after a restart: say why it failed
        hits = json.loads(found.stdout)["hits"]
        assert len(hits) == 1 and hits[0]["best_clip"]["start_s"] == pytest.approx(spans[1][0], abs=1.0)
        assert again.stop() == 0
    finally:
        if again.proc.poll() is None:
            again.stop()


def test_up_warns_once_the_index_outgrows_milvus_lite():
    from vidstrata.up import UpSettings, lite_size_warning

    limit = UpSettings().lite_max_videos
    assert lite_size_warning(limit, limit) is None
    warning = lite_size_warning(limit + 1, limit)
    assert warning is not None and "VIDSTRATA_MILVUS_URI" in warning and str(limit + 1) in warning


class FakeGateway:
    """GetVideo answers from a script: each call to get() pops the video's next state (the last one stays)."""

    def __init__(self, script):
        self.script = {video_id: list(states) for video_id, states in script.items()}

    def get(self, video_id):
        from vidstrata.v1 import search_pb2

        states = self.script[video_id]
        status, fields = states.pop(0) if len(states) > 1 else states[0]
        return search_pb2.Video(video_id=video_id, status=getattr(search_pb2.Video, status), **fields)


def test_up_reports_each_sample_as_it_finishes_and_when_the_first_search_is_ready(capsys, tmp_path):
    import threading

    from vidstrata.up import follow_samples

    running = ("RUNNING", {"stage": "speech", "progress": 40.0})
    gateway = FakeGateway({
        "bikes": [("PENDING", {}), ("READY", {"clip_count": 3, "duration_s": 10.0})],
        "carphone": [("FAILED", {"reason": "decode: no video stream"})],
        "cafe_tour": [running, running, ("READY", {"clip_count": 2, "duration_s": 12.0})],
    })
    done = follow_samples(gateway, ["bikes", "carphone", "cafe_tour"], threading.Event(), wait_s=60, logs=tmp_path,
                          poll_s=0.01, note_every_s=0.0)
    assert done == {"carphone": "FAILED", "bikes": "READY", "cafe_tour": "READY"}
    out = capsys.readouterr().out
    assert re.search(r"sample bikes\s+READY\s+3 clips, 10.0 s", out)
    assert re.search(r"sample carphone\s+FAILED\s+decode: no video stream", out)
    assert "still ingesting: cafe_tour (RUNNING, speech 40 %)" in out
    assert out.index("sample carphone") < out.index("sample bikes") < out.index("sample cafe_tour")
    last = out.strip().splitlines()[-1]
    assert last.startswith("ready: 2 of 3 samples indexed (1 FAILED: carphone); try: ")
    assert last.endswith('search "someone making a latte"   (Ctrl-C stops everything)')


def test_up_says_plainly_when_no_sample_could_be_indexed(capsys, tmp_path):
    import threading

    from vidstrata.up import follow_samples

    gateway = FakeGateway({"bikes": [("FAILED", {"reason": "worker lost"})]})
    follow_samples(gateway, ["bikes"], threading.Event(), wait_s=60, logs=tmp_path, poll_s=0.01)
    out = capsys.readouterr().out
    assert "sample bikes         FAILED  worker lost" in out
    assert out.strip().splitlines()[-1].startswith("no sample could be indexed (1 of 1 FAILED; the worker's log: ")


def test_a_repository_an_earlier_version_wrote_is_exported_again(tmp_path):
    """Triton cannot load a python-backend model whose shim imports a module that moved (the bare `export.` of the
    layout before the one import name), and a model exported before the queue policy keeps working for callers that
    gave up: `up` finds such models and exports again."""
    from vidstrata.export.triton_repo import _python_shim

    policy = "dynamic_batching { default_queue_policy { timeout_action: REJECT } }\n"
    for model, text in {"text_encoder_tokenizer": _python_shim("TextTokenizerModel"),
                        "speech_recognizer": "from export.triton_speech import SpeechRecognizerModel as TritonPythonModel\n",
                        "old_room": "from spec.gone import Model as TritonPythonModel\n"}.items():
        (tmp_path / model / "1").mkdir(parents=True)
        (tmp_path / model / "1" / "model.py").write_text(text)
        (tmp_path / model / "config.pbtxt").write_text(policy)
    for model, config in {"frame_encoder": 'backend: "onnxruntime"\ndynamic_batching { }\n',
                          "text_encoder": 'platform: "ensemble"\n'}.items():
        (tmp_path / model).mkdir()
        (tmp_path / model / "config.pbtxt").write_text(config)
    # As the supervisor sees them: from the installed command, not from the checkout's folders on sys.path.
    found = subprocess.run([sys.executable, "-c", "import sys; from vidstrata.up import stale_models; "
                            f"print(stale_models(__import__('pathlib').Path({str(tmp_path)!r})))"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert found.stdout.strip() == "['frame_encoder', 'old_room', 'speech_recognizer']", found.stderr
