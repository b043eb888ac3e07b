"""The wire side of the gateway: proto messages to the service's arguments, its results and errors back to messages.

Pure functions, no server and no service call: the servicer calls these around each `SearchService` call. What
a caller sees holds nothing secret: status fields and error messages have the credentials of source URLs redacted
(spec.redaction), and an error message is cut to fit gRPC's status trailer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from vidstrata.gateway.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unavailable,
)
from vidstrata.gateway.fusion import FusionMethod
from vidstrata.gateway.moments import Moment
from vidstrata.gateway.query import Confidence, GroupBy, SearchQuery, parse_search
from vidstrata.gateway.service import Hit, SearchResult
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.index.segments import SegmentRecord
from vidstrata.jobs.status import IngestState, VideoStatus
from vidstrata.spec.channels import TIMED_TEXT_CHANNELS
from vidstrata.spec.redaction import redact_text, redact_uri
from vidstrata.v1 import search_pb2

SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["VideoSearch"].full_name  # "vidstrata.v1.VideoSearch"

_CODES: tuple[tuple[type[ServiceError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
)
_STATES = {
    IngestState.PENDING: search_pb2.Video.PENDING,
    IngestState.RUNNING: search_pb2.Video.RUNNING,
    IngestState.READY: search_pb2.Video.READY,
    IngestState.FAILED: search_pb2.Video.FAILED,
}

# A status message travels percent-encoded in a trailer that gRPC caps at 16 KiB; past it the client gets a
# transport error (RESOURCE_EXHAUSTED) instead of the status. 4000 bytes stay under the cap even fully encoded.
MAX_STATUS_MESSAGE_BYTES = 4000


def status_message(text: str) -> str:
    """The message as sent: cut to MAX_STATUS_MESSAGE_BYTES of UTF-8 (never mid-character) when longer."""
    data = text.encode("utf-8")
    if len(data) <= MAX_STATUS_MESSAGE_BYTES:
        return text
    return data[: MAX_STATUS_MESSAGE_BYTES - 40].decode("utf-8", errors="ignore") + f"... ({len(data)} bytes in all)"


def error_status(error: ServiceError) -> tuple[grpc.StatusCode, str]:
    """The gRPC status of an error the service raised on purpose: its kind's code, its message redacted and cut."""
    code = next(code for kind, code in _CODES if isinstance(error, kind))
    return code, status_message(redact_text(str(error)))


def search_query(settings: GatewaySettings, request: search_pb2.SearchRequest, tenant: str) -> SearchQuery:
    """The validated query of a SearchRequest (query.parse_search) over `tenant`'s videos (the request's tenant as
    gateway.tenants.request_tenant resolved it); InvalidArgument when it is not one."""
    method = None
    if request.fusion.method != search_pb2.Fusion.METHOD_UNSPECIFIED:
        try:
            method = FusionMethod(search_pb2.Fusion.Method.Name(request.fusion.method))
        except ValueError as exc:
            raise InvalidArgument(f"unknown fusion method {request.fusion.method}; use WEIGHTED or RRF") from exc
    try:
        group_by = GroupBy(search_pb2.SearchRequest.GroupBy.Name(request.group_by or search_pb2.SearchRequest.VIDEO))
        min_confidence = Confidence(request.min_confidence)
    except ValueError as exc:
        raise InvalidArgument(f"unknown group_by {request.group_by} or min_confidence {request.min_confidence}") from exc
    return parse_search(
        settings,
        request.query,
        top_k=request.top_k if request.HasField("top_k") else None,
        filter_expr=request.filter,
        method=method,
        weights=dict(request.fusion.weights),
        image=request.image,
        moments_per_video=request.moments_per_video if request.HasField("moments_per_video") else None,
        group_by=group_by,
        page_size=request.page_size if request.HasField("page_size") else None,
        page_token=request.page_token,
        video_ids=list(request.video_ids),
        like_video_id=request.like_video_id,
        min_confidence=min_confidence,
        tenant=tenant,
    )


def _moment(moment: Moment) -> search_pb2.Moment:
    return search_pb2.Moment(start_s=moment.start_s, end_s=moment.end_s, score=moment.score, level=moment.level,
                             snippet=moment.snippet, confidence=int(moment.confidence), video_id=moment.video_id)


def _hit(hit: Hit) -> search_pb2.SearchHit:
    why = hit.match
    return search_pb2.SearchHit(
        video_id=hit.video_id,
        score=hit.score,
        levels=search_pb2.LevelScores(**{k: v for k, v in hit.levels.items() if math.isfinite(v)}),
        best_clip=search_pb2.ClipSpan(start_s=hit.best_clip.start_s, end_s=hit.best_clip.end_s, score=hit.best_clip.score),
        why=search_pb2.MatchReason(level=why.level, start_s=why.start_s, end_s=why.end_s, snippet=why.snippet)
        if why else None,
        moments=[_moment(m) for m in hit.moments],
        confidence=int(hit.confidence),
        near_duplicate=hit.near_duplicate,
    )


def search_response(result: SearchResult, method: FusionMethod) -> search_pb2.SearchResponse:
    """The proto of a SearchResult."""
    t = result.timings
    return search_pb2.SearchResponse(
        hits=[_hit(hit) for hit in result.hits],
        phrases=result.phrases,
        timings=search_pb2.StageTimings(
            encode_ms=t.encode * 1e3, ann_videos_ms=t.ann_videos * 1e3, ann_clips_ms=t.ann_clips * 1e3,
            rescore_ms=t.rescore * 1e3, rescore_fetch_ms=t.rescore_fetch * 1e3, fusion_ms=t.fusion * 1e3,
            total_ms=t.total * 1e3,
        ),
        fusion_method=search_pb2.Fusion.Method.Value(method.value),
        candidates=result.candidates,
        moments=[_moment(m) for m in result.moments],
        next_page_token=result.next_page_token,
        window_exhausted=result.window_exhausted,
        order=result.order,
    )


def modality_switches(request: search_pb2.SubmitVideoRequest) -> dict[str, bool] | None:
    """The modalities a SubmitVideoRequest switched on or off, by name; None when it set no `modalities`."""
    if not request.HasField("modalities"):
        return None
    return {field.name: value for field, value in request.modalities.ListFields()}


def _timestamp(unix_s: float) -> Timestamp | None:
    if unix_s <= 0:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(int(unix_s * 1e9))
    return stamp


def video_message(status: VideoStatus, text: Mapping[str, Sequence[SegmentRecord]] | None = None) -> search_pb2.Video:
    """The proto of a video's status, with its timed text (kind -> segments) when asked for."""
    text = text or {}

    def timed(kind: str) -> list[search_pb2.TimedText]:
        return [search_pb2.TimedText(start_s=s.start_s, end_s=s.end_s, text=s.text) for s in text.get(kind, ())]

    return search_pb2.Video(
        **{c.text_field: timed(c.segment_kind) for c in TIMED_TEXT_CHANNELS if c.text_field and c.segment_kind},
        video_id=status.video_id,
        status=_STATES[status.state],
        progress=status.progress,
        stage=redact_text(status.stage),
        reason=redact_text(status.reason),
        clip_count=status.clip_count or 0,
        duration_s=status.duration_s or 0.0,
        metadata=status.metadata,
        uri=redact_uri(status.uri),
        task_id=status.task_id,
        submitted_at=_timestamp(status.submitted_at),
        updated_at=_timestamp(status.updated_at),
        tenant=status.tenant,
        visual_model=status.visual_model,
        text_model=status.text_model,
    )
