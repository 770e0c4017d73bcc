"""Benchmark of the copy tier: precision and recall of the perceptual hash on near-copies of real photos.

The set (bench/duplicate_set.py): scikit-image's bundled sample photographs, each copied through JPEG
quality 30-95, resizing 0.25x-2x, crops to 85-90%, rotations of 1-3 degrees, brightness and contrast
changes and screenshots (a uniform margin, an application window around it); the other photos, their
copies and crops of regions that do not overlap are the non-copies. Every file is decoded as the server
decodes it, then hashed with ``runtime.libraries.perceptual.perceptual_hash``.

Printed: recall and false matches per transformation at ``COPY_DISTANCE``, the curve over thresholds
for the whole set, the closest distinct pairs, the threshold the curve gives, and the hash's cost per
image against the decode it follows (the same file, the same run).

    python bench/bench_duplicates.py            # every photo (about a minute on 2 cores)
    python bench/bench_duplicates.py --smoke    # six photos, seconds

scikit-image comes from requirements-dev.txt (./scripts/setup.sh installs it); no photo is downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import p50, parser, print_table, timed
from bench.duplicate_set import (
    COPY_KINDS,
    DRAFT_TO,
    Distances,
    Score,
    build_items,
    closest_distinct,
    decoded,
    encode,
    photos,
    pick_threshold,
)
from runtime.inputs.images import ImageLimits, decode_image
from runtime.libraries.perceptual import COPY_DISTANCE, HASH_SIZE, hash_distance, perceptual_hash

TARGET_PRECISION, TARGET_RECALL = 0.99, 0.95
SMOKE_PHOTOS = 6


def score_row(name: str, score: Score) -> list:
    return [name, score.copies, score.found, f"{score.recall:.3f}", score.false, f"{score.precision:.4f}"]


def print_classes(distances: Distances, threshold: int) -> None:
    scores = distances.scores(threshold)
    rows = [score_row(kind, scores[kind]) for kind in (*COPY_KINDS, "region")]
    rows.append(score_row("all", scores["all"]))
    header = ["transformation", "copies", "found", "recall", "false matches", "precision"]
    print_table(f"Copy tier at COPY_DISTANCE = {threshold} of {HASH_SIZE**2} bits, by transformation", header, rows)
    by_copy = distances.by_copy(threshold)
    worst = [[name, s.copies, s.found, f"{s.recall:.3f}"] for name, s in by_copy.items() if s.recall < 1]
    print_table("Copies not all found, by variant", ["copy", "copies", "found", "recall"], worst)


def print_curve(distances: Distances, bits: int) -> None:
    rows = []
    for threshold in range(0, bits // 2 + 1, 4):
        scores = distances.scores(threshold)
        whole = scores["all"]
        classes = " ".join(f"{kind} {scores[kind].recall:.2f}" for kind in COPY_KINDS)
        rows.append([threshold, f"{whole.precision:.4f}", f"{whole.recall:.3f}", whole.false, classes])
        if whole.precision < 0.5:
            break
    print_table(
        "Curve over thresholds (whole set)", ["threshold", "precision", "recall", "false", "recall by class"], rows
    )


def print_target(distances: Distances, bits: int) -> None:
    met = [
        t
        for t in range(bits + 1)
        if (s := distances.scores(t)["all"]).precision >= TARGET_PRECISION and s.recall >= TARGET_RECALL
    ]
    if met:
        print(f"\ntarget (precision >= {TARGET_PRECISION} at recall >= {TARGET_RECALL}): met at {met[0]}-{met[-1]}")
        return
    best = max(range(bits + 1), key=lambda t: (distances.scores(t)["all"].precision >= TARGET_PRECISION, t))
    scores = distances.scores(best)
    short = [kind for kind in COPY_KINDS if scores[kind].recall < TARGET_RECALL]
    print(
        f"\ntarget (precision >= {TARGET_PRECISION} at recall >= {TARGET_RECALL}): missed; at the largest threshold "
        f"with precision >= {TARGET_PRECISION} ({best}) recall is {scores['all'].recall:.3f}; "
        f"the classes below {TARGET_RECALL}: {', '.join(short)}"
    )
    kept = [kind for kind in COPY_KINDS if kind not in short]
    found = sum(scores[kind].found for kind in kept)
    total = sum(scores[kind].copies for kind in kept)
    print(f"without those classes, recall at {best} is {found / total:.3f} ({found} of {total})")


def cost_row(label: str, data: bytes, draft: int | None, rounds: int) -> list:
    def decode() -> Image.Image:
        return decode_image(data, "image", ImageLimits(), draft_to=draft)

    image = decode()
    decode_ms = p50(timed(decode, rounds))
    hash_ms = p50(timed(lambda: perceptual_hash(image), rounds))
    return [f"{label}, decoded at {image.width} x {image.height}", decode_ms, hash_ms, f"{hash_ms / decode_ms:.2f}x"]


def print_cost(rounds: int) -> None:
    """ms per image: the decode the server does anyway, and the hash after it. A photo at 224 x 336, and at
    12 MP as a JPEG (drafted to the model's size while decoding, as the server does) and as a PNG (no
    reduced-scale decode: the hash reads the full frame)."""
    coffee = photos()["coffee"]
    small, large = coffee.resize((336, 224), Image.Resampling.BICUBIC), coffee.resize((4240, 2827))
    rows = [
        cost_row("224 x 336 JPEG", encode(small), DRAFT_TO, rounds),
        cost_row("12 MP JPEG", encode(large), DRAFT_TO, rounds),
        cost_row("12 MP PNG", encode(large, "PNG"), DRAFT_TO, max(3, rounds // 5)),
    ]
    print_table("Cost per image (p50 ms)", ["image", "decode", "perceptual_hash", "hash / decode"], rows)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    items = build_items()
    if args.smoke:
        kept = sorted({item.source for item in items})[:SMOKE_PHOTOS]
        items = [item for item in items if item.source in kept]
    hashes = [perceptual_hash(decoded(item)) for item in items]
    distances = Distances.of(items, hashes, hash_distance)
    bits = HASH_SIZE**2
    sources = len({item.source for item in items})
    pairs = f"{len(distances.copies)} copy pairs, {len(distances.distinct)} distinct pairs"
    print(f"Copy tier: {sources} photos, {len(items)} files, {pairs}")
    print_classes(distances, COPY_DISTANCE)
    print_curve(distances, bits)
    rows = [[a.name + " of " + a.group, b.name + " of " + b.group, d] for a, b, d in closest_distinct(distances, 8)]
    print_table("Closest distinct pairs", ["file", "file", "bits apart"], rows)
    picked = pick_threshold(distances)
    print(f"\nthreshold the curve gives (a fifth below the closest distinct pair): {picked}")
    print(f"COPY_DISTANCE (runtime/libraries/perceptual.py): {COPY_DISTANCE}")
    print_target(distances, bits)
    print_cost(5 if args.smoke else 30)


if __name__ == "__main__":
    main()
