"""Golden vectors of the default checkpoint, kept the way open_clip keeps reference outputs.

A few fixed texts and frames, with the vectors the served graphs gave for them when this file was last written
(tests/data/golden_default.json). Any change to preprocessing (tokenizer, phrase split, crop), to export or to the
backbone moves them and fails here at 1e-5, so drift cannot land unnoticed. When a change is meant to move them,
regenerate with `python -m tests.test_golden` and say why in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from skimage import data as photos

from vidstrata.inference.encoder import Encoder
from vidstrata.inference.factory import open_encoder
from vidstrata.spec.preprocess import center_crop_square

GOLDEN = Path(__file__).parent / "data" / "golden_default.json"
TEXTS = ["a red circle moves left, then a blue square appears", "a cat", "rocket launch while people watch",
         "two people talk, and a car drives past while it rains"]
PHOTOS = ("astronaut", "coffee", "rocket", "chelsea")
TOLERANCE = 1e-5


def golden_frames(image_size: int) -> np.ndarray:
    """uint8 [4,S,S,3]: scikit-image's real photos, centre-cropped as the frame encoder takes them."""
    return np.stack([center_crop_square(getattr(photos, name)(), image_size) for name in PHOTOS])


def outputs(encoder: Encoder) -> dict[str, list]:
    """What the golden file stores: sentence [T,D], the used phrase slots' vectors [sum(mask),D], frames [F,D]."""
    text = encoder.encode_text(TEXTS)
    frames = encoder.encode_frames(golden_frames(encoder.info().image_size))
    return {"texts": TEXTS, "photos": list(PHOTOS), "phrase_mask": text.phrase_mask.tolist(),
            "sentence": np.round(text.sentence, 7).tolist(), "phrases": np.round(text.phrases[text.phrase_mask], 7).tolist(),
            "frames": np.round(frames, 7).tolist()}


def test_default_checkpoint_matches_its_golden_vectors(model_repository: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    now = outputs(open_encoder(repository=model_repository))
    assert now["texts"] == golden["texts"] and now["photos"] == golden["photos"], "regenerate the golden file"
    assert now["phrase_mask"] == golden["phrase_mask"], "the phrase split changed"
    for name in ("sentence", "phrases", "frames"):
        np.testing.assert_allclose(np.array(now[name]), np.array(golden[name]), atol=TOLERANCE, rtol=0,
                                   err_msg=f"{name} vectors drifted from tests/data/golden_default.json")


if __name__ == "__main__":
    import tempfile

    from vidstrata.export.pipeline import export_checkpoint, resolve_checkpoint

    checkpoint = resolve_checkpoint(None, Path(__file__).resolve().parents[1] / "build")
    repository = export_checkpoint(checkpoint, "python", Path(tempfile.mkdtemp()) / "repo").repository
    GOLDEN.write_text(json.dumps(outputs(open_encoder(repository=repository))) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
