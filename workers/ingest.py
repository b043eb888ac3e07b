"""The ingest pipeline as plain logic: fetch -> decode || embed -> clips [-> video head] -> one index write.

Decoding runs in its own thread and fills a bounded queue of frame batches; the calling thread keeps
`embed_inflight` batches in flight to the encoder, so the encoder is fed while the decoder works and
memory holds at most a few batches. The parameter-free segmentation (`aggregate_video`) cuts the clips;
where the repository serves a trained video head (`EncoderInfo.video_head`), the clip and video vectors
are the head's, over those same clips and spans. Nothing reaches the index until every vector is made:
the single `replace_video` at the end is the only write, so a failure anywhere leaves the index as it was.

Every status write names the run's task id and is dropped unless the video's record still names it
(`jobs.status`): a run whose write is dropped, or that finds the record gone or owned by a newer submission,
stops with IngestCancelled and writes nothing more. The index write runs under the video's `write_lock`,
after a last ownership check, so the rows of a replaced submission never land after a newer one's.
No Celery here: `workers.tasks` maps the exceptions to retries and failures.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Union

import numpy as np

from vidstrata.spec.aggregation import VideoAggregate, aggregate_video
from vidstrata.spec.channels import SEGMENT_KINDS, TIMED_TEXT_CHANNELS, Channel
from vidstrata.jobs.status import StatusStore, VideoStatus
from vidstrata.index.schema import DEFAULT_TENANT, ModelVersions
from vidstrata.index.lexicon import LexiconIndex
from vidstrata.index.segments import SegmentIndex, SegmentRecord
from vidstrata.index.store import ClipRecord, VideoIndex, VideoRecord
from vidstrata.inference.encoder import Encoder
from vidstrata.inference.screen_text import TritonScreenText
from vidstrata.inference.speech import TimedText, TritonSpeech
from vidstrata.spec.screen_text import LineFilter
from vidstrata.media.video import FrameBatch, VideoReader
from vidstrata.workers.errors import IngestCancelled, ModelMismatch
from vidstrata.workers.fetch import SourcePolicy, fetch
from vidstrata.workers.settings import TIME_LIMIT_GRACE_S, WorkerSettings
from vidstrata.workers.screen_text import read_screen_text
from vidstrata.workers.speech import transcribe_video
from vidstrata.workers.text_stages import TimedTextStage, embed_segments, write_lexicon

# Share of the progress bar each stage ends at; embedding (with decoding) is most of the work.
_FETCHED, _EMBEDDED = 5.0, 90.0


@dataclass(frozen=True)
class IngestSummary:
    """What one ingest produced, and where its time went.

    timings_s: fetch; decode (decoder busy time, overlapping embed); embed (wall time of decode and embed
    together, until the last vector); speech, screen_text (each timed-text stage's own wall time, in a thread
    beside decode and embed; absent when the modality is off); speech_wait, screen_text_wait (how long ingest
    waited for it after embedding); write (clustering, the video head where served, embedding the segment
    texts, waiting for the video's write lock, and the index writes).
    """

    video_id: str
    clip_count: int
    duration_s: float
    frames: int
    timings_s: dict[str, float] = field(default_factory=dict)


@dataclass
class _Produced:
    """Every vector of one video, made and not yet written (Ingestor._produce)."""

    duration_s: float
    note: str
    aggregate: VideoAggregate
    segments: dict[str, list[SegmentRecord]]
    frames: int
    timings: dict[str, float]


class _Done:
    """End of the decoder's batches."""


_QueueItem = Union[FrameBatch, BaseException, _Done]


class _Decoder(threading.Thread):
    """Feeds a bounded queue from the reader; stops early when asked, so the caller can always join it."""

    def __init__(self, reader: VideoReader, batch: int, depth: int) -> None:
        super().__init__(name="decode", daemon=True)
        self.reader, self.batch = reader, batch
        self.queue: queue.Queue[_QueueItem] = queue.Queue(maxsize=depth)
        self.stopping = threading.Event()
        self.busy_s = 0.0

    def _put(self, item: _QueueItem) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            started = time.perf_counter()
            for batch in self.reader.batches(self.batch):
                self.busy_s += time.perf_counter() - started
                if not self._put(batch):
                    return
                started = time.perf_counter()
            self.busy_s += time.perf_counter() - started
            self._put(_Done())
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread, which raises it
            self._put(exc)

    def items(self) -> Iterator[FrameBatch]:
        """The batches in order; re-raises the decoder's exception in the caller's thread."""
        while True:
            item = self.queue.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self.stopping.set()
        self.join()


class Ingestor:
    """Ingests one video at a time with the given encoder, index and status store (all shared, thread-safe)."""

    def __init__(self, settings: WorkerSettings, encoder: Encoder, index: VideoIndex, status: StatusStore,
                 stages: list[TimedTextStage] | None = None) -> None:
        self.settings = settings
        self.encoder = encoder
        self.index = index
        self.status = status
        self.segments = SegmentIndex(index)
        self.lexicon = LexiconIndex(index)
        self.stages = stages if stages is not None else text_stages(settings)
        if index.connection.served is None:  # a schema migration backfills what this worker serves
            index.connection.served = self.served_models

    def served_models(self) -> ModelVersions:
        """The model versions of this worker's encoder: what its rows are written with (EncoderUnavailable)."""
        info = self.encoder.info()
        return ModelVersions(info.visual_model, info.text_model)

    def _progress(self, video_id: str, task_id: str, percent: float, stage: str) -> None:
        """Report progress, or stop: the write is dropped when the record is gone or names a newer submission."""
        if not self.status.mark_running(video_id, round(min(percent, 100.0), 1), stage, task_id=task_id):
            self._check_current(video_id, task_id)  # raises, saying which of the two it was
            raise IngestCancelled(f"video {video_id!r}: the progress of task {task_id} was refused")

    @property
    def write_lock_ttl_s(self) -> float:
        """How long a video's write lock outlives its holder at most: the hard time limit of a task."""
        return self.settings.task_time_limit_s + TIME_LIMIT_GRACE_S

    def is_current(self, video_id: str, task_id: str) -> bool:
        """Whether video_id's status record exists and belongs to task_id."""
        try:
            self._check_current(video_id, task_id)
        except IngestCancelled:
            return False
        return True

    def _check_current(self, video_id: str, task_id: str) -> None:
        """Refuse to work for a deleted video, or for a submission a newer one replaced."""
        record = self.status.get(video_id)
        if record is None:
            raise IngestCancelled(f"video {video_id!r} has no status record (deleted, or never submitted)")
        if record.task_id != task_id:
            raise IngestCancelled(f"video {video_id!r} was resubmitted as task {record.task_id}; this is {task_id}")

    def run(self, video_id: str, uri: str, metadata: dict[str, str], task_id: str,
            modalities: list[str] | None = None, tenant: str = DEFAULT_TENANT,
            visual_model: str | None = None, text_model: str | None = None) -> IngestSummary:
        """Ingest the video at uri under video_id as task task_id (the owner its status record names), as a video of
        `tenant`; the index holds it (and only it) once this returns, its rows marked with the served model versions.

        `modalities` narrows the timed-text stages the deployment runs to these kinds (None: all of them); a
        kind left out stores nothing, so it also clears what an earlier ingest stored. `visual_model`, `text_model`:
        the versions the task asks for (a re-index; None: any); ModelMismatch when this worker serves others, before
        any work.
        """
        self._check_current(video_id, task_id)
        models = self.check_models(visual_model, text_model)
        produced = self._produce(video_id, uri, modalities,
                                 lambda percent, stage: self._progress(video_id, task_id, percent, stage),
                                 lambda: not self.is_current(video_id, task_id))
        started = time.perf_counter()
        # One writer per video at a time, and only the owner: a newer submission's write waits for this one
        # to end, so its rows are the last ones whichever task got here first.
        with self.status.write_lock(video_id, task_id, self.write_lock_ttl_s):
            self._check_current(video_id, task_id)
            self._write(video_id, metadata, produced.duration_s, produced.aggregate, produced.segments, tenant, models)
            produced.timings["write"] += time.perf_counter() - started
            if not self.status.mark_ready(video_id, len(produced.aggregate.clips), produced.duration_s, produced.note,
                                          task_id=task_id, visual_model=models.visual_model,
                                          text_model=models.text_model):
                if self.status.get(video_id) is None:
                    self.index.delete_video(video_id)
                    raise IngestCancelled(
                        f"video {video_id!r} was deleted while it was being written; removed it again")
                # the newer submission's own write comes after this one (the lock), or its failure removes it
                raise IngestCancelled(
                    f"video {video_id!r} was resubmitted while task {task_id} was writing it; the newer ingest "
                    "replaces what it wrote")
        return IngestSummary(video_id, len(produced.aggregate.clips), produced.duration_s, produced.frames,
                             produced.timings)

    def check_models(self, visual_model: str | None, text_model: str | None) -> ModelVersions:
        """The served versions, or ModelMismatch when a task asks for others (None: any)."""
        models = self.served_models()
        for asked, served in ((visual_model, models.visual_model), (text_model, models.text_model)):
            if asked is not None and asked != served:
                raise ModelMismatch(f"the task asks for model version {asked!r}, this worker serves {served!r}")
        return models

    def _produce(self, video_id: str, uri: str, modalities: list[str] | None,
                 progress: Callable[[float, str], None], cancelled: Callable[[], bool]) -> _Produced:
        """Every vector of the video at uri, nothing written: fetch, decode || embed || timed text, clips, video
        head, segment texts embedded. `progress(percent, stage)` reports (and may raise to stop); `cancelled()`
        stops a download."""
        timings: dict[str, float] = {}
        progress(0.0, "fetch")
        started = time.perf_counter()
        with fetch(uri, self.settings.max_download_bytes, self.settings.fetch_timeout_s,
                   self.settings.allow_local_paths, self.settings.fetch_deadline_s,
                   cancelled, SourcePolicy.from_settings(self.settings)) as path:
            timings["fetch"] = time.perf_counter() - started
            progress(_FETCHED, "decode")
            info = self.encoder.info()
            if info.dim != self.index.settings.vector_dim:
                raise RuntimeError(
                    f"the frame encoder makes {info.dim}-d vectors but the index holds "
                    f"{self.index.settings.vector_dim}-d ones: set VIDSTRATA_MILVUS_VECTOR_DIM to match the served model"
                )
            running = {stage.kind: stage.start(path) for stage in self.stages
                       if modalities is None or stage.kind in modalities}
            try:
                with VideoReader(path, info.image_size, self.settings.sample_fps, self.settings.max_frames,
                                 self.settings.max_duration_s, self.settings.max_frame_pixels) as reader:
                    started = time.perf_counter()
                    timestamps, vectors, timings["decode"] = self._embed(reader, progress)
                    timings["embed"] = time.perf_counter() - started
                    duration_s, note = reader.duration_s, reader.note  # from the frames decoded, not the header
                texts: dict[str, list[TimedText]] = {}
                for kind, future in running.items():
                    started = time.perf_counter()
                    texts[kind], timings[kind] = future.result()
                    timings[f"{kind}_wait"] = time.perf_counter() - started
            finally:
                for future in running.values():  # the source goes away with this block
                    future.cancel()
                wait(list(running.values()))
        started = time.perf_counter()
        progress(_EMBEDDED, "write")
        aggregate = aggregate_video(vectors, timestamps, duration_s)
        if info.video_head:
            clip_vectors, video_vector = self.encoder.encode_video(vectors, aggregate.clip_ids(), len(aggregate.clips))
            aggregate = aggregate.with_vectors(clip_vectors, video_vector)
        # a modality that is off stores nothing, so a re-ingest with it off clears what an earlier one stored
        segments = {kind: embed_segments(video_id, kind, texts.get(kind, []), self.encoder)
                    for kind in SEGMENT_KINDS}
        timings["write"] = time.perf_counter() - started
        return _Produced(duration_s, note, aggregate, segments, len(timestamps), timings)

    def _embed(self, reader: VideoReader,
               progress: Callable[[float, str], None]) -> tuple[np.ndarray, np.ndarray, float]:
        """Timestamps [N] and frame vectors [N,D] of the sampled frames, and the decoder's busy seconds."""
        decoder = _Decoder(reader, self.settings.frame_batch, self.settings.decode_queue_batches)
        inflight = self.settings.embed_inflight
        pending: deque[tuple[np.ndarray, Future[np.ndarray]]] = deque()
        times: list[np.ndarray] = []
        vectors: list[np.ndarray] = []

        def collect() -> None:
            stamps, future = pending.popleft()
            times.append(stamps)
            vectors.append(future.result())
            done = sum(len(t) for t in times) / reader.expected_frames
            progress(_FETCHED + (_EMBEDDED - _FETCHED) * min(done, 1.0), "embed")

        pool = ThreadPoolExecutor(max_workers=inflight, thread_name_prefix="embed")
        decoder.start()
        try:
            for batch in decoder.items():
                pending.append((batch.timestamps, pool.submit(self.encoder.encode_frames, batch.frames)))
                while len(pending) >= inflight:
                    collect()
            while pending:
                collect()
        finally:
            decoder.stop()
            pool.shutdown(wait=True, cancel_futures=True)
        return np.concatenate(times), np.concatenate(vectors), decoder.busy_s

    def _write(self, video_id: str, metadata: dict[str, str], duration_s: float, aggregate: VideoAggregate,
               segments: dict[str, list[SegmentRecord]], tenant: str, models: ModelVersions) -> None:
        """Segments of each kind first (an empty list clears a kind), the video and its clips last (index.segments);
        every row names its tenant and the model version that made its vector."""
        clips = [
            ClipRecord(video_id, i, clip.start_s, clip.end_s, clip.vector) for i, clip in enumerate(aggregate.clips)
        ]
        video = VideoRecord(video_id, aggregate.vector, duration_s, len(clips), metadata, created_at=time.time(),
                            visual_model=models.visual_model, tenant=tenant)
        self._write_rows(video, clips, segments, models.text_model)

    def _write_rows(self, video: VideoRecord, clips: list[ClipRecord], segments: dict[str, list[SegmentRecord]],
                    text_model: str) -> None:
        for kind, records in segments.items():
            self.segments.replace_segments(video, kind, records, text_model=text_model)
        write_lexicon(self.lexicon, video, segments, text_model, self.settings)
        self.index.replace_video(video, clips)

    def reindex(self, record: VideoStatus, task_id: str, models: ModelVersions,
                reuse_from: VideoIndex | None = None) -> IngestSummary:
        """Write the video of `record` (READY where Search serves it) into this Ingestor's index under `models`, its
        status record untouched: a re-index into the generation kept beside the served one (jobs.reindex).

        ModelMismatch when this encoder serves other versions. `reuse_from`: the served generation's index, when
        only the text encoder changed (same frame graph): the video and clip vectors are copied from it and the
        stored transcripts and on-screen texts embedded again, with no fetch or decode; a video it lacks is
        re-embedded from its source. The write happens under the video's write lock and only while the record
        still names the submission it was read with (IngestCancelled else: a newer one re-indexes it again).
        """
        video_id = record.video_id
        self.check_models(models.visual_model, models.text_model)
        reused = self._reuse(record, reuse_from, models) if reuse_from is not None else None
        if reused is not None:
            video, clips, segments, timings = reused
            frames = 0
        else:
            produced = self._produce(video_id, record.uri, None, lambda percent, stage: None,
                                     lambda: not self.is_current(video_id, record.task_id))
            clips = [ClipRecord(video_id, i, c.start_s, c.end_s, c.vector)
                     for i, c in enumerate(produced.aggregate.clips)]
            video = VideoRecord(video_id, produced.aggregate.vector, produced.duration_s, len(clips), record.metadata,
                                created_at=time.time(), visual_model=models.visual_model, tenant=record.tenant)
            segments, timings, frames = produced.segments, produced.timings, produced.frames
        started = time.perf_counter()
        with self.status.write_lock(video_id, task_id, self.write_lock_ttl_s):
            current = self.status.get(video_id)
            if current is None or current.task_id != record.task_id:
                raise IngestCancelled(f"video {video_id!r} was deleted or resubmitted during its re-index")
            self._write_rows(video, clips, segments, models.text_model)
        timings["write"] = timings.get("write", 0.0) + time.perf_counter() - started
        return IngestSummary(video_id, len(clips), video.duration_s, frames, timings)

    def _reuse(self, record: VideoStatus, source: VideoIndex, models: ModelVersions
               ) -> tuple[VideoRecord, list[ClipRecord], dict[str, list[SegmentRecord]], dict[str, float]] | None:
        """The video's rows from `source` with its visual vectors kept and its timed texts embedded again by this
        encoder; None when `source` lacks the video or holds it under another frame graph (its visual vectors would
        not be this encoder's: `visual_model` is "<text digest>/<frame digest>")."""
        started = time.perf_counter()
        stored = source.get_videos([record.video_id]).get(record.video_id)
        if stored is None or frame_digest(stored.visual_model) != frame_digest(models.visual_model):
            return None
        clips = source.get_candidate_vectors([record.video_id], {record.video_id: stored.clip_count}).clips.get(
            record.video_id, [])
        texts: dict[str, list[TimedText]] = {}
        for segment in SegmentIndex(source).get_segments([record.video_id], vectors=False).get(record.video_id, []):
            texts.setdefault(segment.kind, []).append(TimedText(segment.start_s, segment.end_s, segment.text))
        read = time.perf_counter()
        segments = {kind: embed_segments(record.video_id, kind, texts.get(kind, []), self.encoder)
                    for kind in SEGMENT_KINDS}
        video = replace(stored, visual_model=models.visual_model)
        return video, clips, segments, {"read": read - started, "embed_text": time.perf_counter() - read}


def frame_digest(visual_model: str) -> str:
    """The frame graph's part of a visual model version ("<text digest>/<frame digest>"; "" when it has none)."""
    return visual_model.partition("/")[2]


def _speech_stage(settings: WorkerSettings, kind: str) -> TimedTextStage:
    speech = TritonSpeech(settings.triton.url, settings.speech_timeout_s, settings.speech_inflight)
    return TimedTextStage(kind, lambda path: transcribe_video(path, speech, settings.max_duration_s), speech.close)


def _screen_text_stage(settings: WorkerSettings, kind: str) -> TimedTextStage:
    reader = TritonScreenText(settings.triton.url, settings.screen_text_timeout_s)
    return TimedTextStage(kind, lambda path: read_screen_text(
        path, reader, settings.screen_text_sample_fps, settings.screen_text_max_per_minute,
        settings.screen_text_change_threshold, settings.screen_text_max_side, settings.max_duration_s,
        settings.max_frame_pixels, LineFilter(settings.screen_text_min_confidence, settings.screen_text_edge_margin)),
        reader.close)


# The stage of each timed-text channel (spec.channels): adding a channel adds its row there and its stage here.
STAGES: dict[Channel, Callable[[WorkerSettings, str], TimedTextStage]] = {
    Channel.SPEECH: _speech_stage, Channel.SCREEN_TEXT: _screen_text_stage,
}


def text_stages(settings: WorkerSettings) -> list[TimedTextStage]:
    """The timed-text stages the deployment switched on, each with its own Triton client."""
    return [STAGES[c.channel](settings, c.segment_kind) for c in TIMED_TEXT_CHANNELS
            if c.segment_kind and c.switch and getattr(settings, c.switch)]
