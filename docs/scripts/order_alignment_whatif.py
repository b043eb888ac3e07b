"""What-if: how much an order-aware clip-phrase level separates a video from its reverse, by alignment rule.

For every pair of the `ordered` set's photos (bench.datasets.ORDER_PHOTOS, 105 pairs), a clip is the photo's frame
vector (the default encoder, in process) and the query "A then B" is encoded as the gateway encodes it. The right
video's clips are [A, B], its reverse's [B, A]. Printed per rule: the clip-phrase difference right - reverse
(percentiles) and the share of pairs where it exceeds 0.001 (about the codec noise between the two videos of a pair
on the other levels in the real run, docs/eval-issue23/temporal):

- non-decreasing (gateway.order.aligned_scores: phrases may share a clip);
- strict (each phrase its own clip, c_1 < c_2), for two clips: the mean of cos(A, a) and cos(B, b) against the
  mean of cos(B, a) and cos(A, b);
- and how often each phrase's best clip is its own photo's (the encoder tells the two apart per phrase).

Run: python docs/scripts/order_alignment_whatif.py [MODEL_REPOSITORY] (default build/model_repository).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, for bench

from bench.datasets import ORDER_PHOTOS, ORDER_PHRASINGS
from vidstrata.gateway.order import aligned_scores, read_order
from vidstrata.inference.factory import open_encoder
from vidstrata.media.photos import CAPTIONS, load_photo
from vidstrata.spec.preprocess import center_crop_square


def main(repository: Path) -> None:
    encoder = open_encoder(repository=repository, threads=1)
    size = encoder.info().image_size
    clips = {}
    for name in ORDER_PHOTOS:
        vector = encoder.encode_frames(center_crop_square(load_photo(name), size)[None])[0]
        clips[name] = vector / np.linalg.norm(vector)
    rules: dict[str, list[float]] = {"non-decreasing": [], "strict": []}
    own_best = []
    for a, b in itertools.combinations(ORDER_PHOTOS, 2):
        text = ORDER_PHRASINGS["A then B"].format(a=CAPTIONS[a], b=CAPTIONS[b])
        vectors = encoder.encode_text([text])
        used = np.flatnonzero(vectors.phrase_mask[0])
        stated = read_order(text, [vectors.phrase_texts[0][i] for i in used])
        assert stated is not None and stated.order == (0, 1), text
        right = np.stack([clips[a], clips[b]]) @ vectors.phrases[0, used].T  # [clip, phrase]
        reverse = right[::-1]
        rules["non-decreasing"].append(aligned_scores(right, stated.order)[0] - aligned_scores(reverse, stated.order)[0])
        rules["strict"].append((right[0, 0] + right[1, 1] - reverse[0, 0] - reverse[1, 1]) / 2)
        own_best.append(bool(right[0, 0] > right[1, 0] and right[1, 1] > right[0, 1]))
    for rule, differences in rules.items():
        values = np.asarray(differences)
        print(f"{rule}: right - reverse percentiles 10/25/50/75/90 {np.percentile(values, [10, 25, 50, 75, 90]).round(4)}, "
              f"share > 0.001: {(values > 0.001).mean():.2f}")
    print(f"both phrases' best clip is their own photo's: {np.mean(own_best):.2f} of {len(own_best)} pairs")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build/model_repository"))
