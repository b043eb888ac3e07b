"""The timed-text stages of ingest (speech, on-screen text): each runs in a thread of its own beside frame
decoding and embedding, and its texts are embedded by the text encoder once it is done; the lexicon stage writes
their words (and named metadata values) for the lexical channel."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vidstrata.index.lexicon import LexiconIndex, metadata_document
from vidstrata.index.segments import Segment, SegmentRecord, SegmentVideo
from vidstrata.inference.encoder import Encoder
from vidstrata.inference.speech import TimedText
from vidstrata.workers.settings import WorkerSettings


class TimedTextStage:
    """Runs `read(path)` (a video file -> its timed texts) in the background; `close` releases its client."""

    def __init__(self, kind: str, read: Callable[[Path], list[TimedText]], close: Callable[[], None]) -> None:
        self.kind = kind
        self._read, self._close = read, close
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=kind)

    def start(self, path: Path) -> Future[tuple[list[TimedText], float]]:
        """The timed texts of the file at path and the seconds it took, computed in the background.

        `.result()` raises the stage's errors (EncoderUnavailable: Triton down; av errors: a broken track).
        """
        return self._pool.submit(self._timed, path)

    def _timed(self, path: Path) -> tuple[list[TimedText], float]:
        started = time.perf_counter()
        texts = self._read(path)
        return texts, time.perf_counter() - started

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._close()


def embed_segments(video_id: str, kind: str, segments: list[TimedText], encoder: Encoder,
                   batch: int = 32) -> list[SegmentRecord]:
    """Segment records with their text encoder sentence vectors [D], in time order, indexed 0..n-1."""
    ordered = sorted(segments, key=lambda s: (s.start_s, s.end_s))
    vectors = [encoder.encode_text([s.text for s in ordered[i : i + batch]]).sentence for i in range(0, len(ordered), batch)]
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32)
    return [SegmentRecord(video_id, kind, i, s.start_s, s.end_s, s.text, stacked[i]) for i, s in enumerate(ordered)]


def write_lexicon(lexicon: LexiconIndex, video: SegmentVideo, segments: Mapping[str, Sequence[Segment]],
                  text_model: str, settings: WorkerSettings) -> None:
    """Write the video's lexicon rows (index.lexicon) beside its segments, before its video row: each kind's timed
    texts, and its metadata values of settings.lexical_metadata_keys as one document; nothing when the deployment
    has the lexical channel off (VIDSTRATA_WORKER_LEXICAL)."""
    if not settings.lexical:
        return
    for kind, records in segments.items():
        lexicon.replace_lexicon(video, kind, records, text_model)
    document = metadata_document(video.video_id, video.metadata, settings.lexical_metadata_keys, video.duration_s)
    lexicon.replace_lexicon(video, document.kind, [document] if document.text else [], text_model)
