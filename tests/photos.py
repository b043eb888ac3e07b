"""Real photos shipped by scikit-image, with captions we wrote; they live in bench.photos (one source)."""

from bench.photos import CAPTIONS, load_photo

__all__ = ["CAPTIONS", "load_photo"]
