"""Speech (ASR) end to end on real parts: espeak-ng narration muxed as AAC by PyAV, PyAV + Silero VAD in the
worker's speech stage, Whisper tiny.en in the real tritonserver, segments in Milvus Lite, no network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vidstrata.media.synthetic import narration_track, write_scene_video
from vidstrata.inference.speech import AudioWindow, TritonSpeech
from vidstrata.spec.contract import SPEECH_SAMPLE_RATE
from tests.photos import load_photo
from vidstrata.workers.speech import read_audio, transcribe_video, voiced_windows

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing (make system-deps)")

# Two lines, spoken from these seconds of an 12-second video of two scenes.
LINES = [(1.0, "The boy rides his bicycle along the river."), (7.0, "Fresh bread comes out of the oven.")]
DURATIONS = [6.0, 6.0]


def narrated_video(path: Path, lines: list[tuple[float, str]] = LINES) -> list[tuple[float, float]]:
    """A two-scene video with `lines` spoken over it; returns the spoken spans."""
    audio, spans = narration_track(lines, sum(DURATIONS))
    write_scene_video(path, [load_photo("coffee"), load_photo("rocket")], DURATIONS, fps=10, audio=audio)
    return spans


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[tuple[float, float]]]]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng missing (make system-deps)")
    folder = tmp_path_factory.mktemp("speech")
    spoken = narrated_video(folder / "narrated.mp4")
    silent_track, _ = narration_track([], sum(DURATIONS))
    write_scene_video(folder / "quiet.mp4", [load_photo("coffee")], [4.0], fps=10,
                      audio=type(silent_track)(silent_track.samples[: 4 * silent_track.rate], silent_track.rate))
    write_scene_video(folder / "mute.mp4", [load_photo("coffee")], [4.0], fps=10)
    return {"narrated": (folder / "narrated.mp4", spoken), "quiet": (folder / "quiet.mp4", []),
            "mute": (folder / "mute.mp4", [])}


def test_audio_is_read_as_16khz_mono_blocks(media):
    path, _ = media["narrated"]
    blocks = list(read_audio(path, 5.0, 3600.0))
    assert [round(start, 2) for start, _ in blocks[:3]] == [0.0, 5.0, 10.0]
    assert all(len(samples) == 5 * SPEECH_SAMPLE_RATE for _, samples in blocks[:-1])
    total_s = sum(len(samples) for _, samples in blocks) / SPEECH_SAMPLE_RATE
    assert abs(total_s - sum(DURATIONS)) < 0.1
    assert list(read_audio(media["mute"][0], 5.0, 3600.0)) == []  # no audio track: nothing, no error


def test_vad_keeps_the_spoken_spans_and_drops_silence(media):
    path, spoken = media["narrated"]
    windows = list(voiced_windows(path, 3600.0))
    assert len(windows) == 1  # 12 s fits one window, trimmed to the voiced span
    start, end = windows[0].offset_s, windows[0].offset_s + len(windows[0].samples) / SPEECH_SAMPLE_RATE
    assert abs(start - spoken[0][0]) < 0.4 and abs(end - spoken[-1][1]) < 0.4, (start, end, spoken)
    assert list(voiced_windows(media["quiet"][0], 3600.0)) == []


def test_long_speech_is_cut_between_utterances_not_inside_them(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng missing")
    lines = [(float(t), "Every minute the train leaves the station on time.") for t in range(0, 70, 4)]
    audio, spans = narration_track(lines, 72.0)
    write_scene_video(tmp_path / "long.mp4", [load_photo("coffee")], [72.0], fps=2, audio=audio)
    windows = list(voiced_windows(tmp_path / "long.mp4", 3600.0))
    assert len(windows) >= 3 and all(len(w.samples) <= 30 * SPEECH_SAMPLE_RATE for w in windows)
    for window in windows:  # every window edge falls in a pause, never inside a spoken line
        for edge in (window.offset_s, window.offset_s + len(window.samples) / SPEECH_SAMPLE_RATE):
            assert not any(a + 0.3 < edge < b - 0.3 for a, b in spans), (edge, spans)


@pytest.mark.e2e
def test_triton_transcribes_with_spans(triton, media):
    path, spoken = media["narrated"]
    speech = TritonSpeech(triton.grpc_url)
    try:
        segments = transcribe_video(path, speech, 3600.0)
    finally:
        speech.close()
    assert len(segments) == 2, segments
    for segment, (start, end), (_, line) in zip(segments, spoken, LINES, strict=True):
        assert abs(segment.start_s - start) < 0.5 and abs(segment.end_s - end) < 1.0, (segment, start, end)
        assert word_recall(line, segment.text) >= 0.7, (line, segment.text)


def word_recall(truth: str, heard: str) -> float:
    """Share of the true words that were recognised (Whisper tiny.en on espeak-ng misses about 1 in 7)."""
    words = lambda text: [w.strip(".,!?").lower() for w in text.split()]  # noqa: E731
    said, found = words(truth), set(words(heard))
    return sum(w in found for w in said) / len(said)


@pytest.mark.e2e
def test_triton_batches_windows_and_rejects_bad_audio(triton, media):
    path, _ = media["narrated"]
    window = next(voiced_windows(path, 3600.0))
    speech = TritonSpeech(triton.grpc_url, max_inflight=4)
    try:
        batch = speech.transcribe([window, AudioWindow(100.0, window.samples), window])
        assert len(batch) % 3 == 0 and batch[len(batch) // 3].start_s >= 100.0  # one answer per window, re-timed
        from vidstrata.inference.encoder import EncoderInputError

        with pytest.raises(EncoderInputError):
            speech.transcribe([AudioWindow(0.0, np.zeros(31 * SPEECH_SAMPLE_RATE, np.float32))])
        assert speech.transcribe([AudioWindow(0.0, np.zeros(SPEECH_SAMPLE_RATE, np.float32))]) == []
    finally:
        speech.close()


OFFLINE_SCRIPT = textwrap.dedent("""
    import socket, sys
    from pathlib import Path
    real_connect = socket.socket.connect
    def guarded(self, address):  # any non-loopback connection fails the test loudly
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise SystemExit(f"network used: {address}")
        return real_connect(self, address)
    socket.socket.connect = guarded
    from vidstrata.stack.triton import TritonPorts, start_tritonserver
    from vidstrata.inference.speech import TritonSpeech
    from vidstrata.workers.speech import transcribe_video
    repository, work, video = map(Path, sys.argv[1:4])
    ports = TritonPorts.free()
    server = start_tritonserver(repository, work, ports)
    try:
        speech = TritonSpeech(f"127.0.0.1:{ports.grpc}")
        server.wait_ready(speech.ready, timeout_s=120)
        print(" | ".join(s.text for s in transcribe_video(video, speech, 3600.0)))
    finally:
        server.stop()
""")


@pytest.mark.e2e
def test_speech_needs_no_network(model_repository, media, tmp_path):
    """Triton, the Whisper weights and the worker's VAD in a network namespace of their own (only loopback),
    with the Hugging Face hub client told it is online and a socket guard in the worker process."""
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here (unshare -n needs CAP_SYS_ADMIN)")
    speech_only = tmp_path / "repository"
    speech_only.mkdir()
    (speech_only / "speech_recognizer").symlink_to(model_repository / "speech_recognizer")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    script = f"ip link set lo up && exec {sys.executable} -c '{OFFLINE_SCRIPT}' {speech_only} {tmp_path} {media['narrated'][0]}"
    result = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, env=env,
                            timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-3000:]
    assert word_recall(LINES[1][1], result.stdout) >= 0.7, result.stdout + result.stderr[-2000:]


@pytest.mark.e2e
def test_the_real_worker_indexes_the_timed_transcript(ingest_stack, media):
    """Celery worker -> Triton ASR and text encoder -> Milvus Lite; a silent video is READY with no speech, and a
    re-ingest replaces the transcript."""
    from vidstrata.index.segments import SegmentIndex

    ingest_stack.start_worker()
    segments = SegmentIndex(ingest_stack.index)
    path, spoken = media["narrated"]
    ingest_stack.submit("narrated", str(path))
    assert ingest_stack.wait("narrated", timeout_s=120).state.value == "READY"
    stored = segments.get_segments(["narrated"])["narrated"]
    assert [s.kind for s in stored] == ["speech", "speech"]
    for segment, (start, end), (_, line) in zip(stored, spoken, LINES, strict=True):
        assert abs(segment.start_s - start) < 0.5 and abs(segment.end_s - end) < 1.0
        assert word_recall(line, segment.text) >= 0.7 and segment.vector is not None
    for name in ("quiet", "mute"):
        ingest_stack.submit(name, str(media[name][0]))
        assert ingest_stack.wait(name, timeout_s=120).state.value == "READY"
    assert segments.get_segments(["quiet", "mute"]) == {}
    ingest_stack.submit("narrated", str(media["mute"][0]))  # the same id, now a video without speech
    assert ingest_stack.wait("narrated", timeout_s=120).state.value == "READY"
    assert segments.get_segments(["narrated"]) == {}


@pytest.mark.e2e
def test_a_submission_without_speech_stores_none_and_clears_the_old(ingest_stack, media):
    """Per-submission switch: the same video re-ingested with speech off (only screen text) has no transcript."""
    import uuid

    from vidstrata.index.segments import SegmentIndex

    if not ingest_stack.workers:
        ingest_stack.start_worker()
    segments = SegmentIndex(ingest_stack.index)
    path = str(media["narrated"][0])
    ingest_stack.submit("switched", path)
    assert ingest_stack.wait("switched", timeout_s=120).state.value == "READY"
    assert [s.kind for s in segments.get_segments(["switched"])["switched"]] == ["speech", "speech"]
    task_id = str(uuid.uuid4())
    ingest_stack.status.mark_pending("switched", task_id, path, {})
    ingest_stack.queue.enqueue(task_id, "switched", path, {}, modalities=["screen_text"])
    assert ingest_stack.wait("switched", timeout_s=120).state.value == "READY"
    assert segments.get_segments(["switched"]) == {}
