"""`python -m bench.speech`: speed and memory of Triton's `speech_recognizer` (Whisper tiny.en, CTranslate2).

Starts tritonserver with only the speech model, then sends voiced windows cut by the worker's speech stage
(`workers.speech.voiced_windows`) from a generated video narrated by espeak-ng: one window at a time, then
`--inflight` at once so the dynamic batcher merges them. Reports seconds of audio per second (the inverse of the
real-time factor), per-window latency, the stub's resident memory (VmRSS of the python backend stub serving
the model) and the word recall of the transcript.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import write_results
from vidstrata.media.photos import load_photo
from vidstrata.media.synthetic import narration_track, write_scene_video
from vidstrata.export.speech_model import write_speech_model
from vidstrata.inference.speech import TritonSpeech
from vidstrata.spec.contract import SPEECH_SAMPLE_RATE
from vidstrata.stack.triton import TritonPorts, start_tritonserver
from vidstrata.workers.speech import voiced_windows

LINES = ["The boy rides his bicycle along the river.", "Fresh bread comes out of the oven.",
         "The train leaves the station at noon.", "A red kite flies above the green hill.",
         "She opens the window and the morning light comes in.", "Two dogs chase a ball across the park."]


def _stub_rss_mib(server_pid: int) -> float:
    """Resident MiB of the python backend stubs that tritonserver started (the model lives there)."""
    total = 0.0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(server_pid) and "triton_python" in fields.get("Name", ""):
            total += int(fields["VmRSS"].split()[0]) / 1024
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the narrated video")
    parser.add_argument("--inflight", type=int, default=4, help="windows in flight in the batched run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-speech-") as tmp:
        work = Path(tmp)
        duration = args.minutes * 60
        lines = [(float(t), LINES[i % len(LINES)]) for i, t in enumerate(range(0, int(duration) - 4, 5))]
        audio, _ = narration_track(lines, duration)
        video = work / "narrated.mp4"
        write_scene_video(video, [load_photo("coffee")], [duration], fps=1, audio=audio)
        started = time.perf_counter()
        windows = list(voiced_windows(video, duration + 1))
        vad_s = time.perf_counter() - started
        voiced_s = sum(len(w.samples) for w in windows) / SPEECH_SAMPLE_RATE
        repository = work / "repository"
        write_speech_model(repository, "python")
        ports = TritonPorts.free()
        server = start_tritonserver(repository, work / "triton", ports)
        speech = TritonSpeech(f"127.0.0.1:{ports.grpc}", timeout_s=600, max_inflight=args.inflight)
        try:
            load_started = time.perf_counter()
            server.wait_ready(speech.ready, timeout_s=300)
            load_s = time.perf_counter() - load_started
            speech.transcribe(windows[:1])  # warm-up
            started = time.perf_counter()
            latencies = []
            for window in windows:
                one = time.perf_counter()
                speech.transcribe([window])
                latencies.append(time.perf_counter() - one)
            serial_s = time.perf_counter() - started
            started = time.perf_counter()
            with ThreadPoolExecutor(args.inflight) as pool:
                found = [s for part in pool.map(lambda w: speech.transcribe([w]), windows) for s in part]
            batched_s = time.perf_counter() - started
            rss = _stub_rss_mib(server.pid)
        finally:
            speech.close()
            server.stop()
    heard = {w.strip(".,").lower() for s in found for w in s.text.split()}
    said = [w.strip(".,").lower() for _, line in lines for w in line.split()]
    results = {
        "audio_s": duration, "voiced_s": round(voiced_s, 1), "windows": len(windows),
        "vad_s": round(vad_s, 2), "model_load_s": round(load_s, 1),
        "serial_audio_s_per_s": round(voiced_s / serial_s, 1),
        "window_latency_s_median": round(sorted(latencies)[len(latencies) // 2], 2),
        f"batched_{args.inflight}_audio_s_per_s": round(voiced_s / batched_s, 1),
        "stub_rss_mib": round(rss), "word_recall": round(sum(w in heard for w in said) / len(said), 3),
    }
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in results.items())
    print(table)
    write_results("speech", results, table)


if __name__ == "__main__":
    main()
