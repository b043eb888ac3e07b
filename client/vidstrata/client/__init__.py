"""A small gRPC client of the gateway, for the CLI (`vidstrata ingest/search/list/status/delete/stats`) and `up`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import grpc

from vidstrata.v1 import search_pb2, search_pb2_grpc


class GatewayError(RuntimeError):
    """A call failed; the message is one line meant for people, `code` the gRPC status code (None: unreachable)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class GatewayClient:
    """Blocking calls with a deadline; every failure becomes a GatewayError with a clear line."""

    def __init__(self, address: str, token: str = "", timeout_s: float = 10.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._channel = grpc.insecure_channel(address)
        self._stub = search_pb2_grpc.VideoSearchStub(self._channel)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """gRPC errors of the block as GatewayError."""
        try:
            yield
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            details = exc.details() or ""  # type: ignore[attr-defined]
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and "connect" in details.lower():
                raise GatewayError(f"gateway not reachable at {self.address} — is `make up` running?",
                                   grpc.StatusCode.UNAVAILABLE) from None
            raise GatewayError(f"{code.name}: {details}", code) from None

    def _call(self, method: str, request: object) -> object:
        with self._errors():
            return getattr(self._stub, method)(request, timeout=self.timeout_s, metadata=self._metadata)

    def search(self, query: str = "", top_k: int = 10, filter_expr: str = "", image: bytes = b"", *,
               page_size: int | None = None, page_token: str = "", video_ids: Iterable[str] = (), like_video_id: str = "",
               group_by: str = "", moments_per_video: int | None = None,
               min_confidence: str = "") -> search_pb2.SearchResponse:
        """Search by a sentence, an image (JPEG or PNG bytes, query left empty) or a stored video (like_video_id).

        page_size (with page_token from the previous page's next_page_token) pages the ranking; video_ids scopes it;
        group_by "VIDEO" or "MOMENT"; min_confidence "LOW", "MEDIUM" or "HIGH"; "" and None leave the gateway's default.
        """
        request = search_pb2.SearchRequest(
            query=query, top_k=top_k, filter=filter_expr, image=image, page_size=page_size, page_token=page_token,
            video_ids=list(video_ids), like_video_id=like_video_id, moments_per_video=moments_per_video,
            group_by=search_pb2.SearchRequest.GroupBy.Value(group_by.upper()) if group_by else None,
            min_confidence=search_pb2.Confidence.Value(min_confidence.upper()) if min_confidence else None,
        )
        return self._call("Search", request)

    def list_videos(self, filter_expr: str = "", status: str = "", page_size: int | None = None,
                    page_token: str = "") -> search_pb2.ListVideosResponse:
        """One page of the videos in the index and the ingest queue, in video_id order; status is a Video.Status name
        ("" : every state); page_token is the previous page's next_page_token."""
        request = search_pb2.ListVideosRequest(
            filter=filter_expr, status=search_pb2.Video.Status.Value(status.upper()) if status else None,
            page_size=page_size, page_token=page_token)
        return self._call("ListVideos", request)

    def watch_video(self, video_id: str, timeout_s: float | None = None) -> Iterator[search_pb2.Video]:
        """The video's state now, then each change until READY or FAILED (WatchVideo); no deadline unless timeout_s."""
        with self._errors():
            yield from self._stub.WatchVideo(search_pb2.WatchVideoRequest(video_id=video_id), timeout=timeout_s,
                                             metadata=self._metadata)

    def submit(self, uri: str, video_id: str = "", metadata: dict[str, str] | None = None,
               speech: bool | None = None, screen_text: bool | None = None) -> search_pb2.SubmitVideoResponse:
        """Queue an ingest; speech/screen_text False turn that modality off for this video (None: the deployment's)."""
        request = search_pb2.SubmitVideoRequest(video_id=video_id, uri=uri, metadata=metadata or {})
        if speech is not None or screen_text is not None:
            request.modalities.CopyFrom(search_pb2.Modalities(speech=speech, screen_text=screen_text))
        return self._call("SubmitVideo", request)

    def get(self, video_id: str, include_text: bool = False) -> search_pb2.Video:
        """The video's status; with include_text also its timed transcript and on-screen text."""
        return self._call("GetVideo", search_pb2.GetVideoRequest(video_id=video_id, include_text=include_text))

    def delete(self, video_id: str) -> search_pb2.DeleteVideoResponse:
        return self._call("DeleteVideo", search_pb2.DeleteVideoRequest(video_id=video_id))

    def stats(self) -> search_pb2.GetStatsResponse:
        """Counts of videos and clips, and the ingest queue's length."""
        return self._call("GetStats", search_pb2.GetStatsRequest())

    def close(self) -> None:
        self._channel.close()
