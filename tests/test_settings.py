"""Settings: defaults, one prefix per class, the shared parts composed into both services, validation, and a
description for every field."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from vidstrata.gateway.fusion import DEFAULT_TEXT_RANGES
from vidstrata.gateway.settings import GatewaySettings
from vidstrata.index import IndexSettings
from vidstrata.inference.settings import TritonSettings
from vidstrata.jobs.settings import RedisSettings
from vidstrata.config_docs import SETTINGS_CLASSES, settings_table
from vidstrata.workers.settings import WorkerSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("VIDSTRATA_")]:
        monkeypatch.delenv(name)
    settings = IndexSettings()
    assert (settings.milvus_uri, settings.collection_prefix, settings.index_type, settings.metric) == (
        "http://127.0.0.1:19530", "", "HNSW", "COSINE"
    )
    assert (settings.hnsw_m, settings.hnsw_ef_construction, settings.hnsw_ef, settings.vector_dim) == (16, 200, 320, 384)
    assert RedisSettings().url == "redis://127.0.0.1:6379/0"
    assert TritonSettings().url == "127.0.0.1:8001"


def test_reads_vidstrata_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDSTRATA_MILVUS_URI", "http://milvus:19530")
    monkeypatch.setenv("VIDSTRATA_MILVUS_INDEX_TYPE", "ivf_flat")
    monkeypatch.setenv("VIDSTRATA_MILVUS_METRIC", "ip")
    monkeypatch.setenv("VIDSTRATA_MILVUS_VECTOR_DIM", "512")
    monkeypatch.setenv("VIDSTRATA_MILVUS_COLLECTION_PREFIX", "tenant_a_")
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
    for _, path in SETTINGS_CLASSES:
        module, _, name = path.partition(":")
        cls = getattr(__import__(module, fromlist=[name]), name)
        for field_name, field in cls.model_fields.items():
            assert field.description and len(field.description) > 10, f"{name}.{field_name}"


def test_each_service_reads_its_own_prefix_and_shares_the_dependencies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("VIDSTRATA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("VIDSTRATA_WORKER_TRITON_TIMEOUT_S", "31")
    monkeypatch.setenv("VIDSTRATA_GATEWAY_TRITON_TIMEOUT_S", "3")
    monkeypatch.setenv("VIDSTRATA_SAMPLE_FPS", "9")  # a pre-rename name: read by nobody
    monkeypatch.setenv("VIDSTRATA_MILVUS_URI", "http://milvus:19530")
    monkeypatch.setenv("VIDSTRATA_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("VIDSTRATA_TRITON_URL", "triton:8001")
    worker, gateway = WorkerSettings(), GatewaySettings()
    assert (worker.triton_timeout_s, gateway.triton_timeout_s, worker.sample_fps) == (31, 3, 2.0)
    for service in (worker, gateway):
        assert (service.milvus.milvus_uri, service.redis.url, service.triton.url) == (
            "http://milvus:19530", "redis://redis:6379/0", "triton:8001")


def test_no_variable_means_two_things() -> None:
    rows = [line.split("`")[1] for line in settings_table().splitlines()[2:]]
    assert len(rows) == len(set(rows)) and all(row.startswith("VIDSTRATA_") for row in rows)
    assert "VIDSTRATA_METRICS_PORT" not in rows and "VIDSTRATA_TRITON_TIMEOUT_S" not in rows


def test_importing_a_service_reads_no_settings(tmp_path) -> None:
    """Settings are read when a process starts its work, not at import: a bad value cannot break an import. Run
    outside the checkout, as an installed service runs: a module named by its folder alone would not be found."""
    env = dict(os.environ, VIDSTRATA_WORKER_SAMPLE_FPS="not a number", VIDSTRATA_GATEWAY_PORT="not a port")
    code = "import vidstrata.workers.tasks, vidstrata.workers.main, vidstrata.gateway.app"
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    # what the worker names by string (its Celery transport) is found there too
    code = ("from kombu.utils.imports import symbol_by_name\n"
            "from vidstrata.workers.celery_app import app, configure, worker_settings\n"
            "configure(app, worker_settings()); symbol_by_name(app.conf.broker_transport)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_text_level_ranges_are_read_per_level_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDSTRATA_GATEWAY_TEXT_LEVEL_RANGES", '{"screen_text_sentence": [0.35, 0.6]}')
    ranges = GatewaySettings().text_level_ranges
    assert ranges["screen_text_sentence"] == (0.35, 0.6)
    assert ranges["speech_sentence"] == DEFAULT_TEXT_RANGES["speech_sentence"], "levels left out keep the default"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"speech": [0.2, 0.5]}', r"unknown text levels \['speech'\]"),
        ('{"speech_sentence": [0.5, 0.5]}', r"speech_sentence must be \[floor, ceiling\] with -1 <= floor < ceiling"),
        ('{"screen_text_sentence": [0.6, 0.35]}', "screen_text_sentence must be"),
        ("[0.15, 0.5]", "valid dictionary"),  # the old single range's format
    ],
)
def test_text_level_ranges_reject_bad_levels_and_ranges(monkeypatch: pytest.MonkeyPatch, value: str, message: str) -> None:
    monkeypatch.setenv("VIDSTRATA_GATEWAY_TEXT_LEVEL_RANGES", value)
    with pytest.raises(ValidationError, match=message):
        GatewaySettings()
