"""Milvus query replies as plain rows, with vectors read straight from pymilvus's packed reply.

Kept apart from the indexes because it leans on pymilvus internals (`HybridExtraList._lazy_field_data`):
when a pymilvus upgrade changes them, this is the one module to look at, and any other reply shape still
decodes row by row (tests/test_index_store.py checks that the fast path is still taken).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pymilvus import DataType

from vidstrata.index.schema import VECTOR_FIELD


def decoded_rows(reply: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a Milvus query reply as plain dicts, each VECTOR_FIELD a float32 [D] view of one [N, D] array.

    pymilvus decodes a reply's vectors lazily, row by row, into lists of Python floats: about 15 ms for the 500
    vectors of one Search's candidates on this machine, as long as Milvus takes to find them. Its `HybridExtraList`
    keeps the reply's packed FloatArray, whose serialised bytes are the little-endian floats after a 1-byte tag and a
    varint length, so all vectors are read here with one copy (0.04 ms). A reply of any other shape (another pymilvus,
    nullable vectors) is decoded row by row, as before.
    """
    lazy = getattr(reply, "_lazy_field_data", None)
    if not isinstance(reply, list) or lazy is None or any(
        f.field_name != VECTOR_FIELD or f.type != DataType.FLOAT_VECTOR or len(f.valid_data) for f in lazy
    ):
        return [dict(row) for row in reply]
    rows = [dict(row) for row in list.__iter__(reply)]  # the eager fields only: no lazy decoding
    for column in lazy:
        vectors = packed_floats(column.vectors.float_vector.SerializeToString()).reshape(len(rows), column.vectors.dim)
        for row, vector in zip(rows, vectors, strict=True):
            row[VECTOR_FIELD] = vector
    return rows


def packed_floats(message: bytes) -> np.ndarray:
    """The floats of a serialised protobuf FloatArray (field 1, packed): tag 0x0A, varint byte length, the data."""
    if not message:
        return np.zeros(0, dtype=np.float32)
    if message[0] != 0x0A:
        raise ValueError(f"not a packed FloatArray (tag {message[0]:#x})")
    length, shift, at = 0, 0, 1
    while True:
        byte = message[at]
        length |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            break
    if at + length != len(message):
        raise ValueError(f"FloatArray of {len(message)} bytes declares {length} bytes of data")
    return np.frombuffer(message, dtype="<f4", offset=at, count=length // 4)
