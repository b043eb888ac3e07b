"""Input checks that `VideoIndex` and `SegmentIndex` share, run before any I/O.

Bad input is a caller's bug or a user's mistake, so it is a plain ValueError here, never a Milvus error
that would read as a storage failure (index.errors).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np

from vidstrata.index.schema import DEFAULT_TENANT, MAX_RESULT_WINDOW, MODEL_VERSION_MAX_LENGTH, TENANT_MAX_LENGTH
from vidstrata.index.settings import IndexSettings
from vidstrata.spec.validation import check_video_id


def check_number(value: object, what: str, minimum: float | None = None) -> float:
    """A finite number (bool refused) at least `minimum`, as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value!r}")
    return float(value)


def check_limit(limit: int, what: str) -> int:
    """A search limit Milvus accepts in one call: an int in [1, MAX_RESULT_WINDOW]."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RESULT_WINDOW:
        raise ValueError(f"{what} must be an int in [1, {MAX_RESULT_WINDOW}], got {limit!r}")
    return limit


def check_vectors(vectors: object, settings: IndexSettings, what: str) -> np.ndarray:
    """A (N, dim) float32 matrix of finite vectors, each non-zero when the metric is COSINE."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] != settings.vector_dim:
        raise ValueError(f"{what} must have shape (N>=1, {settings.vector_dim}), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    if settings.metric == "COSINE" and (np.linalg.norm(array, axis=1) == 0).any():
        raise ValueError(f"{what} contains a zero vector, which has no cosine similarity")
    return array


def check_vector(vector: object, settings: IndexSettings, what: str) -> np.ndarray:
    """One (dim,) float32 vector, checked like `check_vectors`."""
    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (settings.vector_dim,):
        raise ValueError(f"{what} must have shape ({settings.vector_dim},), got {array.shape}")
    return check_vectors(array[None, :], settings, what)[0]


def unique_video_ids(video_ids: Iterable[str]) -> list[str]:
    """Checked video ids, each once, in first-seen order (ids become quoted filter literals and primary keys)."""
    return list(dict.fromkeys(check_video_id(v) for v in video_ids))


# A model version names encoders (digests, "<text>/<frame>", "unknown-v1"); a tenant is a name of the tenant API's,
# or DEFAULT_TENANT. Both become quoted filter literals and property keys, so their alphabets are narrow.
MODEL_VERSION_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.:/+-]{{0,{MODEL_VERSION_MAX_LENGTH - 1}}}")
TENANT_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{TENANT_MAX_LENGTH - 1}}}")


def check_model_version(version: object) -> str:
    """A model version as stored on rows (MODEL_VERSION_RE): ValueError else."""
    if not isinstance(version, str) or not MODEL_VERSION_RE.fullmatch(version):
        raise ValueError(f"a model version must match {MODEL_VERSION_RE.pattern}, got {version!r}")
    return version


def check_tenant(tenant: object) -> str:
    """A tenant as stored on rows: DEFAULT_TENANT ("") or a name matching TENANT_RE; ValueError else."""
    if tenant != DEFAULT_TENANT and (not isinstance(tenant, str) or not TENANT_RE.fullmatch(tenant)):
        raise ValueError(f"a tenant must be \"\" (the default) or match {TENANT_RE.pattern}, got {tenant!r}")
    return str(tenant)
