"""gateway.videos's listing merge, driven by Hypothesis over in-memory sources: pages in video_id order, no duplicate, no
gap for a video that lived (in the state asked) through the whole listing, whatever comes and goes between pages.
The real sources (Milvus Lite, Redis) and the gateway are in tests/test_list_watch.py."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidstrata.gateway.errors import InvalidArgument
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.gateway.videos import VideoCatalog
from vidstrata.index.filters import CompiledFilter
from vidstrata.index.store import VideoRecord
from vidstrata.jobs.status import IngestState, VideoStatus

IDS = [f"v{i:02d}" for i in range(30)]
STATES = list(IngestState)


class Sources:
    """Index rows (ids) and status records (id -> state), read as VideoIndex.page_videos and StatusStore read them."""

    def __init__(self, rows: set[str], records: dict[str, IngestState]) -> None:
        self.rows, self.records = rows, records

    def page_videos(self, after: str, limit: int, filter_expr: str | CompiledFilter | None = None) -> list[VideoRecord]:
        return [VideoRecord(v, np.empty(0, np.float32), 1.0, 1, {}, 1.7e9) for v in sorted(self.rows) if v > after][:limit]

    def list_ids(self, states: Sequence[IngestState], after: str, limit: int, tenant: str = "") -> list[str]:
        return sorted(v for v, s in self.records.items() if s in states and v > after)[:limit]

    def get_many(self, video_ids: Iterable[str]) -> dict[str, VideoStatus]:
        return {v: VideoStatus(v, self.records[v], "t", "", {}, 1.0, 1.0) for v in video_ids if v in self.records}

    def index_existing(self, batch: int = 1000) -> int:
        return 0

    def state(self, video_id: str) -> IngestState | None:
        """What GetVideo says: the record, else READY for a row, else nothing."""
        return self.records.get(video_id) or (IngestState.READY if video_id in self.rows else None)


videos = st.dictionaries(st.sampled_from(IDS), st.tuples(st.booleans(), st.sampled_from([None, *STATES])))
changes = st.lists(st.tuples(st.sampled_from(IDS), st.sampled_from(["add", "record", "delete"]),
                             st.sampled_from(STATES)), max_size=4)


@settings(max_examples=300, deadline=None)
@given(videos, st.integers(1, 6), st.sampled_from([None, *STATES]), st.lists(changes, max_size=12))
def test_pages_concatenate_without_duplicate_or_gap(initial, page_size, wanted, between):
    rows = {v for v, (row, record) in initial.items() if row or record is None}
    sources = Sources(rows, {v: record for v, (_, record) in initial.items() if record is not None})
    catalog = VideoCatalog(GatewaySettings(), sources, sources)
    alive = {v for v in IDS if sources.state(v) is not None and (wanted is None or sources.state(v) == wanted)}
    seen, token, pages = [], "", 0
    while True:
        page = catalog.list_page(catalog.parse("", wanted, page_size, token), time.monotonic() + 5)
        assert len(page.videos) <= page_size and (len(page.videos) == page_size or not page.next_page_token)
        for video in page.videos:
            assert wanted is None or video.state == wanted
            assert sources.state(video.video_id) == video.state  # as GetVideo says now
        seen += [v.video_id for v in page.videos]
        token = page.next_page_token
        if not token:
            break
        for video_id, change, state in between[pages] if pages < len(between) else ():
            if change == "add":
                sources.rows.add(video_id)
            elif change == "record":
                sources.records[video_id] = state
            else:
                sources.rows.discard(video_id)
                sources.records.pop(video_id, None)
            alive.discard(video_id)  # it did not live through the listing unchanged
        pages += 1
        assert pages <= len(IDS) + 1
    assert seen == sorted(set(seen))  # in order, each once
    assert alive <= set(seen)  # no gap


def test_a_filter_lists_ready_videos_and_is_refused_with_another_state():
    sources = Sources({"a", "b"}, {"b": IngestState.RUNNING})
    catalog = VideoCatalog(GatewaySettings(), sources, sources)
    page = catalog.list_page(catalog.parse('meta.k == "v"', None, None, ""), time.monotonic() + 5)
    assert [v.video_id for v in page.videos] == ["a"] and not page.next_page_token  # b's record says RUNNING
    with pytest.raises(InvalidArgument, match="filter applies to READY videos only"):
        catalog.parse('meta.k == "v"', IngestState.PENDING, None, "")
    for size in (0, 1001):
        with pytest.raises(InvalidArgument, match="page_size"):
            catalog.parse("", None, size, "")


def test_a_token_is_bound_to_its_request_and_expires():
    sources = Sources({"a", "b", "c"}, {})
    catalog = VideoCatalog(GatewaySettings(page_token_ttl_s=2.0), sources, sources)
    token = catalog.list_page(catalog.parse("", None, 1, ""), time.monotonic() + 5).next_page_token
    assert [v.video_id for v in catalog.list_page(catalog.parse("", None, 1, token), time.monotonic() + 5).videos] == ["b"]
    with pytest.raises(InvalidArgument, match="not valid"):
        catalog.parse("", IngestState.READY, 1, token)
    with pytest.raises(InvalidArgument, match="not valid"):
        catalog.parse("", None, 1, token[:-1] + ("A" if token[-1] != "A" else "B"))
    time.sleep(2.1)  # expiry is in whole seconds: valid for at least 1 s, expired after 2
    with pytest.raises(InvalidArgument, match="expired"):
        catalog.parse("", None, 1, token)
