"""ListVideos and WatchVideo: the index and the ingest queue as one list in video_id order, and one video followed.

Listing merges two sources, each read a page at a time in video_id order: the `videos` rows of the index (READY
videos; a filter is compiled by index.filters and applied there) and the ingest status records (jobs.status: one
Redis sorted set of ids per state). A video in both appears once, as its status record, as GetVideo shows it. The
page token is the last video_id the page examined, signed (HMAC-SHA256 under the page-token secret) and bound to the
request's filter and state: the next page starts strictly after it, so a video that exists through the whole listing
is listed exactly once, whatever is added or deleted between pages, and nothing is held on the server between them.
Tokens share gateway.pages's format, key (page_token_secret) and lifetime (page_token_ttl_s) with Search's. A listing
is one tenant's: its rows (the tenant pinned beside the filter, index.filters.RowScope) and its status sets, and a token
is bound to the tenant too.

Watching sends a video's state at once, then every change until READY or FAILED. Changes come from the status
records' pub/sub events (one Redis subscription per gateway, `VideoWatchers`, fanned out in the asyncio loop), and
the record is read again every `watch_poll_s` in case an event was lost; no thread is held while a stream waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from typing import Protocol

from vidstrata.gateway import metrics
from vidstrata.gateway.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable
from vidstrata.gateway.pages import INVALID_TOKEN, read_cursor, request_digest, sign_cursor
from vidstrata.gateway.query import page_secret
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.index.errors import IndexUnavailable
from vidstrata.index.filters import CompiledFilter, FilterError, RowScope, compile_filters
from vidstrata.index.schema import DEFAULT_TENANT
from vidstrata.index.store import VideoRecord
from vidstrata.jobs.errors import StatusUnavailable
from vidstrata.jobs.status import IngestState, StatusEvent, StatusEvents, VideoStatus

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100  # ListVideosRequest.page_size unset
FINISHED = (IngestState.READY, IngestState.FAILED)
SUBSCRIBE_WAIT_S = 1.0  # a new watcher waits this long for the gateway's subscription before reading the state


class VideoRows(Protocol):
    """What listing needs of index.VideoIndex."""

    def page_videos(self, after: str, limit: int, filter_expr: str | CompiledFilter | None = None) -> list[VideoRecord]: ...


class StatusListing(Protocol):
    """What listing needs of jobs.status.StatusStore."""

    def list_ids(self, states: Sequence[IngestState], after: str, limit: int, tenant: str = ...) -> list[str]: ...
    def get_many(self, video_ids: Iterable[str]) -> dict[str, VideoStatus]: ...
    def index_existing(self, batch: int = 1000) -> int: ...


@dataclass(frozen=True)
class ListQuery:
    """A validated ListVideos request: the compiled filter (the tenant pinned), the state asked for (None: any), the
    page size, the video_id the page starts after ("" : the first page), the digest its tokens are bound to, and the
    tenant whose videos it lists."""

    filter: CompiledFilter
    state: IngestState | None
    page_size: int
    after: str
    digest: str
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True)
class VideoPage:
    videos: list[VideoStatus]  # in video_id order
    next_page_token: str  # "" on the last page


@contextmanager
def _backend_errors() -> Iterator[None]:
    """Milvus and Redis being down as Unavailable (retry later)."""
    try:
        yield
    except (IndexUnavailable, StatusUnavailable) as exc:
        raise Unavailable(str(exc)) from exc


def ready_from_row(record: VideoRecord) -> VideoStatus:
    """A video indexed without a status record (not submitted through SubmitVideo), as GetVideo shows it: READY."""
    return VideoStatus(
        video_id=record.video_id, state=IngestState.READY, task_id="", uri="", metadata=record.metadata,
        submitted_at=0.0, updated_at=record.created_at, progress=100.0, clip_count=record.clip_count,
        duration_s=record.duration_s, tenant=record.tenant, visual_model=record.visual_model,
    )


class VideoCatalog:
    """ListVideos over an index and a status store; blocking and thread-safe (run in the server's pool)."""

    def __init__(self, settings: GatewaySettings, index: VideoRows, status: StatusListing) -> None:
        self.settings = settings
        self.index = index
        self.status = status
        self._secret = page_secret(settings)  # the Search page tokens' key: one secret serves every replica

    def index_existing(self) -> None:
        """Add status records older than the state sets to them (once per Redis); logged, never raised."""
        try:
            if seen := self.status.index_existing():
                log.info("indexed %d existing status records for ListVideos", seen)
        except Exception as exc:  # noqa: BLE001 - a listing without old records beats a gateway that does not start
            log.warning("could not index the existing status records for ListVideos: %s", exc)

    # -- requests ---------------------------------------------------------------------------------

    def parse(self, filter_expr: str, state: IngestState | None, page_size: int | None, page_token: str,
              tenant: str = DEFAULT_TENANT) -> ListQuery:
        """Validate a ListVideos request of `tenant` (checked by the caller); InvalidArgument names what is wrong."""
        size = min(DEFAULT_PAGE_SIZE, self.settings.max_top_k) if page_size is None else page_size
        if not 1 <= size <= self.settings.max_top_k:
            raise InvalidArgument(f"page_size must be in [1, {self.settings.max_top_k}], got {size}")
        try:
            compiled = compile_filters(filter_expr, scope=RowScope(tenant=tenant))
        except FilterError as exc:
            raise InvalidArgument(str(exc)) from exc
        if compiled.tree is not None and state not in (None, IngestState.READY):
            raise InvalidArgument(f"filter applies to READY videos only, not to status {state.value}: "
                                  "leave out the filter or the status")
        digest = request_digest(["ListVideos", filter_expr, state and state.value, tenant])
        after = self._decode(page_token, digest) if page_token else ""
        return ListQuery(compiled, state, size, after, digest, tenant)

    def _encode(self, query: ListQuery, after: str) -> str:
        """A token of the page after the video id `after` (gateway.pages, with Search's key and lifetime)."""
        return sign_cursor(self._secret, "list", query.digest, after, self.settings.page_token_ttl_s)

    def _decode(self, token: str, digest: str) -> str:
        after = read_cursor(self._secret, token, "list", digest)
        if not isinstance(after, str) or not after:
            raise INVALID_TOKEN
        return after

    # -- pages ------------------------------------------------------------------------------------

    def list_page(self, query: ListQuery, deadline: float) -> VideoPage:
        """One page of the listing; `deadline` is a time.monotonic() value.

        Each round reads the next page_size + 1 ids after the cursor from each source that can hold what is asked
        (the index for READY or any state, unless a status other than READY is asked; the status sets of the
        states asked, unless a filter is), keeps the smallest page_size + 1 of their union (nothing in between is
        missed: a source's first n + 1 hold its part of the union's first n + 1), and reads their status records:
        a record wins over its index row, and a video whose state is not the one asked is passed over. A round
        that fills the page (and sees one more) ends it; one that leaves both sources exhausted ends the listing.
        A round passes the cursor over every id it examined, so a page short of the deadline still returns with
        the token of where it stopped.
        """
        n, after, page = query.page_size, query.after, []
        from_index = query.state in (None, IngestState.READY)
        filtered = query.filter.tree is not None
        states = [] if filtered else ([query.state] if query.state else list(IngestState))
        wanted = query.state or (IngestState.READY if filtered else None)  # a filter lists READY videos
        while True:
            if time.monotonic() >= deadline:
                if page or after != query.after:
                    return VideoPage(page, self._encode(query, after))
                raise DeadlineExceeded("the deadline passed before the page was read")
            with _backend_errors():
                rows = {r.video_id: r for r in self.index.page_videos(after, n + 1, query.filter)} if from_index else {}
                queued = self.status.list_ids(states, after, n + 1, query.tenant) if states else []
                candidates = sorted(set(rows) | set(queued))[: n + 1]
                records = self.status.get_many(candidates)
            for video_id in candidates:
                video = records.get(video_id) or (ready_from_row(rows[video_id]) if video_id in rows else None)
                if video is None or video.tenant != query.tenant or (wanted is not None and video.state != wanted):
                    after = video_id  # deleted meanwhile (its id maybe taken by another tenant), or in another state
                    continue
                if len(page) == n:
                    return VideoPage(page, self._encode(query, after))
                page.append(video)
                after = video_id
            if len(rows) <= n and len(queued) <= n:
                return VideoPage(page, "")


# -- watching -------------------------------------------------------------------------------------


class TooManyWatchers(Exception):
    """The gateway already streams max_watchers WatchVideo calls (RESOURCE_EXHAUSTED)."""


class VideoWatchers:
    """The status events of every watched video, from one Redis subscription, to each watcher's queue.

    Lives in the server's asyncio loop: the subscription starts with the first watcher and keeps itself going
    (resubscribing a second after Redis fails; watchers poll meanwhile).
    """

    def __init__(self, events: StatusEvents, max_watchers: int) -> None:
        self._events = events
        self.max_watchers = max_watchers
        self._queues: dict[str, set[asyncio.Queue[StatusEvent]]] = {}
        self._count = 0
        self._subscribed = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    @property
    def count(self) -> int:
        """Watchers open now."""
        return self._count

    @asynccontextmanager
    async def watching(self, video_id: str) -> AsyncIterator[asyncio.Queue[StatusEvent]]:
        """A queue of the video's events for the block; TooManyWatchers past max_watchers. Waits up to
        SUBSCRIBE_WAIT_S for the subscription, so a state read in the block misses no later event."""
        if self._count >= self.max_watchers:
            raise TooManyWatchers(f"the gateway already streams {self.max_watchers} WatchVideo calls "
                                  "(VIDSTRATA_GATEWAY_MAX_WATCHERS): retry later, or poll GetVideo")
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen())
        queue: asyncio.Queue[StatusEvent] = asyncio.Queue()
        self._queues.setdefault(video_id, set()).add(queue)
        self._count += 1
        metrics.WATCHERS.set(self._count)
        try:
            try:
                await asyncio.wait_for(self._subscribed.wait(), SUBSCRIBE_WAIT_S)
            except asyncio.TimeoutError:
                pass  # Redis is slow or down: the watcher's polls stand in for the events
            yield queue
        finally:
            self._count -= 1
            metrics.WATCHERS.set(self._count)
            watchers = self._queues[video_id]
            watchers.discard(queue)
            if not watchers:
                del self._queues[video_id]

    async def _listen(self) -> None:
        while True:
            try:
                async for event in self._events.listen(self._subscribed):
                    for queue in self._queues.get(event.video_id, ()):
                        queue.put_nowait(event)
            except StatusUnavailable as exc:
                log.warning("status events: %s; watchers poll until it is back", exc)
            self._subscribed.clear()
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        """Stop the subscription."""
        if self._listener is not None:
            self._listener.cancel()
        await self._events.close()


def _shown(status: VideoStatus) -> VideoStatus:
    """What a watcher sees of a status: a write that changed none of it (the same progress again) is not sent."""
    return replace(status, updated_at=0.0, revision=0)


async def watch(video_id: str, watchers: VideoWatchers, read: Callable[[], Awaitable[VideoStatus]],
                poll_s: float) -> AsyncIterator[VideoStatus]:
    """The video's state now, then each change until READY or FAILED.

    `read` gets the state (GetVideo's: NotFound for an unknown video, or one of another tenant). Events newer than the
    last state sent are taken as they come; after poll_s without one the state is read again, so a lost event delays a
    change by at most poll_s and never hangs the watcher. A video deleted meanwhile ends the stream with NotFound, and
    so does an event of another tenant's record of the id (deleted, then submitted by another tenant).
    """
    async with watchers.watching(video_id) as events:
        current = await read()
        yield current
        while current.state not in FINISHED:
            try:
                event = await asyncio.wait_for(events.get(), poll_s)
            except asyncio.TimeoutError:
                latest = await read()
            else:
                if event.revision <= current.revision:
                    continue  # written before the state already sent
                if event.status is None or event.status.tenant != current.tenant:
                    raise NotFound(f"video {video_id!r} was deleted")
                latest = event.status
            if _shown(latest) != _shown(current):
                yield latest
            current = latest
