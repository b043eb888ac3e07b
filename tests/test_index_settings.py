"""IndexSettings: defaults, environment variables, validation, and a description for every field."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from index import IndexSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("VIDSTRATA_")]:
        monkeypatch.delenv(name)
    settings = IndexSettings()
    assert (settings.milvus_uri, settings.collection_prefix, settings.index_type, settings.metric) == (
        "http://127.0.0.1:19530", "", "HNSW", "COSINE"
    )
    assert (settings.hnsw_m, settings.hnsw_ef_construction, settings.hnsw_ef, settings.vector_dim) == (16, 200, 64, 384)
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


def test_reads_vidstrata_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDSTRATA_MILVUS_URI", "http://milvus:19530")
    monkeypatch.setenv("VIDSTRATA_INDEX_TYPE", "ivf_flat")
    monkeypatch.setenv("VIDSTRATA_METRIC", "ip")
    monkeypatch.setenv("VIDSTRATA_VECTOR_DIM", "512")
    monkeypatch.setenv("VIDSTRATA_COLLECTION_PREFIX", "tenant_a_")
    settings = IndexSettings()
    assert (settings.milvus_uri, settings.index_type, settings.metric, settings.vector_dim) == (
        "http://milvus:19530", "IVF_FLAT", "IP", 512
    )
    assert settings.collection_prefix == "tenant_a_"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("index_type", "DISKANN"),
        ("metric", "L2"),
        ("vector_dim", 1),
        ("hnsw_m", 0),
        ("clip_overfetch", 0),
        ("milvus_timeout_s", 0),
        ("collection_prefix", "bad-prefix"),
        ("collection_prefix", "1abc"),
    ],
)
def test_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        IndexSettings(**{field: value})


def test_every_field_is_described() -> None:
    for name, field in IndexSettings.model_fields.items():
        assert field.description and len(field.description) > 10, name
