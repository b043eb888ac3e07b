"""Real photos shipped by scikit-image, with captions we wrote (media/data/photo_captions.json), as uint8 RGB.

The one source of the captions: the `scenes` evaluation set, the encoder tests and the ingest tests all use it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CAPTIONS_FILE = Path(__file__).parent / "data" / "photo_captions.json"
CAPTIONS: dict[str, str] = json.loads(CAPTIONS_FILE.read_text())


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
