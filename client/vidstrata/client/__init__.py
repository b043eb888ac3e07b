"""A small gRPC client of the gateway, for the CLI (`vidstrata ingest/search/status/delete/stats`) and `up`."""

from __future__ import annotations

import grpc

from vidstrata.v1 import search_pb2, search_pb2_grpc


class GatewayError(RuntimeError):
    """A call failed; the message is one line meant for people."""


class GatewayClient:
    """Blocking calls with a deadline; every failure becomes a GatewayError with a clear line."""

    def __init__(self, address: str, token: str = "", timeout_s: float = 10.0) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._channel = grpc.insecure_channel(address)
        self._stub = search_pb2_grpc.VideoSearchStub(self._channel)

    def _call(self, method: str, request: object) -> object:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and "connect" in (exc.details() or "").lower():
                raise GatewayError(f"gateway not reachable at {self.address} — is `make up` running?") from None
            raise GatewayError(f"{code.name}: {exc.details()}") from None

    def search(self, query: str = "", top_k: int = 10, filter_expr: str = "", image: bytes = b"") -> search_pb2.SearchResponse:
        """Search by a sentence, or by an image (JPEG or PNG bytes) with query left empty."""
        return self._call("Search", search_pb2.SearchRequest(query=query, top_k=top_k, filter=filter_expr, image=image))

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
