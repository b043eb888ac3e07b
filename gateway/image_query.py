"""Search by image: the bytes of a JPEG or PNG, checked and decoded before anything reaches Triton.

A bad image is the client's error (InvalidArgument), never a crash: too many bytes, not a JPEG or PNG,
truncated or corrupt data, or more pixels than `max_pixels` (a decompression bomb). A message names the
limit it broke and the setting that holds it.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from vidstrata.gateway.errors import InvalidArgument

IMAGE_FORMATS = ("JPEG", "PNG")


def size_text(size: int) -> str:
    """A byte count as people read it: `9.4 MiB`, `8 MiB`, `700 KiB`, `512 bytes`."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def image_too_large(size: int, max_bytes: int) -> InvalidArgument:
    """The error of an image of `size` bytes over the limit, naming the limit and its setting."""
    shown = size_text(size)
    if shown == size_text(max_bytes):  # just over the limit: the rounded sizes would read the same
        shown, limit = f"{size} bytes", f"{max_bytes} bytes"
    else:
        limit = size_text(max_bytes)
    return InvalidArgument(f"image is {shown}; the limit is {limit} (VIDSTRATA_GATEWAY_MAX_IMAGE_BYTES)")


def decode_image(data: bytes, max_bytes: int, max_pixels: int) -> np.ndarray:
    """uint8 RGB [H,W,3] of a JPEG or PNG of at most max_bytes bytes and max_pixels pixels."""
    if len(data) > max_bytes:
        raise image_too_large(len(data), max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in IMAGE_FORMATS:
                    raise InvalidArgument(f"image must be JPEG or PNG, got {image.format}")
                if image.width * image.height > max_pixels:
                    raise InvalidArgument(f"image has {image.width}x{image.height} pixels; the limit is {max_pixels} "
                                          "(VIDSTRATA_GATEWAY_MAX_IMAGE_PIXELS)")
                return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except InvalidArgument:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidArgument("image is not a JPEG or PNG (its bytes match no image format)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # PIL's own limit is above ours
        raise InvalidArgument(f"image has more pixels than the limit of {max_pixels}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidArgument(f"image cannot be decoded as JPEG or PNG: {exc}") from exc
