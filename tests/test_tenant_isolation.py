"""No query sees another tenant's rows, whatever its filter (issue 24, 4): a property test against a real Milvus Lite
index holding three tenants' videos, clips and segments.

Hypothesis builds filters of the user language meant to reach out (ors, nots, `video_id` of the other tenant's
videos, metadata keys named `tenant`, comparisons every row passes) and scopes (`video_ids` naming the other tenant's
videos); each is parsed as the gateway parses a Search of tenant "acme" (query.parse_search), narrowed to the served
versions as SearchService does, and run through every read a Search or a listing makes. A filter naming the `tenant`
field itself is no filter of the language: INVALID_ARGUMENT.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.milvus import drop_prefixed
from vidstrata.gateway.errors import InvalidArgument
from vidstrata.gateway.query import parse_search
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.index.filters import RowScope
from vidstrata.index.segments import SegmentIndex, SegmentRecord
from vidstrata.index.settings import IndexSettings
from vidstrata.index.store import ClipRecord, VideoIndex, VideoRecord

DIM = 8
MODEL = "m1/f1"
TEXT_MODEL = "m1"
TENANTS = {"acme": ["a1", "a2", "a3"], "globex": ["g1", "g2", "g3"], "": ["d1"]}
OWNER = {video_id: tenant for tenant, ids in TENANTS.items() for video_id in ids}
SERVED = RowScope(visual_model=MODEL, text_model=TEXT_MODEL)


def _unit(rng: np.random.Generator) -> np.ndarray:
    vector = rng.standard_normal(DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture(scope="module")
def rows(milvus_uri: str) -> Iterator[tuple[VideoIndex, SegmentIndex]]:
    """Three tenants' videos (two clips each), each with a speech segment; metadata that names the other tenant."""
    prefix = f"iso{uuid.uuid4().hex[:10]}_"
    index = VideoIndex(IndexSettings(milvus_uri=milvus_uri, collection_prefix=prefix, vector_dim=DIM, index_type="FLAT"))
    segments = SegmentIndex(index)
    rng = np.random.default_rng(24)
    for video_id, tenant in OWNER.items():
        video = VideoRecord(video_id, _unit(rng), 4.0, 2, {"tenant": "globex", "owner": tenant or "default"},
                            created_at=1.7e9, visual_model=MODEL, tenant=tenant)
        index.replace_video(video, [ClipRecord(video_id, i, 2.0 * i, 2.0 * i + 2, _unit(rng)) for i in range(2)])
        segments.replace_segments(video, "speech", [SegmentRecord(video_id, "speech", 0, 0.0, 2.0, "hello", _unit(rng))],
                                  text_model=TEXT_MODEL)
    yield index, segments
    index.close()
    drop_prefixed(milvus_uri, prefix)


_ids = st.sampled_from(sorted(OWNER) + ["missing"])
_string = st.sampled_from(["acme", "globex", "default", "", "*", '\\" or true'])
_atoms = st.one_of(
    st.builds(lambda v: f'video_id == "{v}"', _ids),
    st.builds(lambda v: f'video_id != "{v}"', _ids),
    st.builds(lambda vs: f"video_id in [{', '.join(f'{chr(34)}{v}{chr(34)}' for v in vs)}]", st.lists(_ids, min_size=1, max_size=4)),
    st.builds(lambda v: f'video_id not in ["{v}"]', _ids),
    st.builds(lambda k, s: f'metadata["{k}"] == "{s}"', st.sampled_from(["tenant", "owner"]), _string),
    st.builds(lambda k, s: f'meta.{k} != "{s}"', st.sampled_from(["tenant", "owner"]), _string),
    st.sampled_from(["duration_s >= 0", "clip_count > 0", "created_at > 0", "duration_s < 0"]),
)
_filters = st.recursive(_atoms, lambda inner: st.one_of(
    st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
    st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
    st.builds(lambda a: f"not ({a})", inner),
), max_leaves=6)


def _seen(index: VideoIndex, segments: SegmentIndex, expr: str, video_ids: list[str], tenant: str) -> set[str]:
    """Every video id any read of a Search (and a listing) of `tenant` returns under this filter and scope."""
    query = parse_search(GatewaySettings(), "q", filter_expr=expr, video_ids=video_ids, tenant=tenant)
    where = query.filter.within(SERVED)
    scope = RowScope(tenant=tenant, visual_model=MODEL, text_model=TEXT_MODEL)
    probe = _unit(np.random.default_rng(7))
    seen = {h.video_id for h in index.search_videos(probe, 50, where)}
    seen |= {h.video_id for hits in index.search_clips_grouped(np.stack([probe, -probe]), 50, where) for h in hits}
    seen |= {h.video_id for h in segments.search(probe, "speech", 50, where).hits}
    seen |= {r.video_id for r in index.page_videos("", 50, where)}
    rows = index.get_candidate_vectors(sorted(OWNER), scope=scope)
    seen |= set(rows.videos) | set(rows.clips)
    seen |= set(index.get_videos(sorted(OWNER), scope))
    seen |= set(segments.get_segments(sorted(OWNER), vectors=False, scope=scope))
    return seen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expr=_filters, video_ids=st.lists(st.sampled_from(sorted(OWNER)), max_size=3))
def test_no_filter_or_scope_reaches_another_tenants_rows(rows, expr: str, video_ids: list[str]) -> None:
    index, segments = rows
    for tenant in ("acme", ""):
        seen = _seen(index, segments, expr, video_ids, tenant)
        assert seen <= set(TENANTS[tenant]), (tenant, expr, video_ids, seen)


def test_the_reads_are_not_vacuous(rows) -> None:
    """The same reads find each tenant's own rows: the property above is not met by finding nothing."""
    index, segments = rows
    for tenant, ids in TENANTS.items():
        assert _seen(index, segments, "", [], tenant) == set(ids)
        assert _seen(index, segments, 'metadata["tenant"] == "globex" or not (video_id == "x")', [], tenant) == set(ids)


@pytest.mark.parametrize("expr", ['tenant == "globex"', 'not (tenant == "acme")', 'video_id == "a1" or tenant != ""',
                                  'tenant in ["acme", "globex"]', 'visual_model == "m1/f1"', 'text_model != ""'])
def test_tenant_and_model_fields_are_unknown_to_the_filter_language(expr: str) -> None:
    with pytest.raises(InvalidArgument, match="unknown field"):
        parse_search(GatewaySettings(), "q", filter_expr=expr, tenant="acme")
