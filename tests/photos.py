"""Real photos shipped by scikit-image, with captions we wrote; they live in vidstrata.media.photos (one source)."""

from vidstrata.media.photos import CAPTIONS, load_photo

__all__ = ["CAPTIONS", "load_photo"]
