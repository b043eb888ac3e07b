"""Real photos shipped by scikit-image, with captions we wrote, as uint8 RGB arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CAPTIONS: dict[str, str] = json.loads((Path(__file__).parent / "data" / "photo_captions.json").read_text())


def load_photo(name: str) -> np.ndarray:
    """One scikit-image sample photo as HxWx3 uint8."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.dtype != np.uint8:
        image = (image * 255 if image.max() <= 1 else image).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3])
