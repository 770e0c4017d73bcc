"""The copy tier's perceptual hash: its precision and recall on near-copies of real photos (the bench's
set, bench/duplicate_set.py, without the model), its threshold, and the hash on odd images."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from bench.duplicate_set import Distances, build_items, decoded, photos, pick_threshold, with_margin
from runtime.libraries.perceptual import COPY_DISTANCE, HASH_SIZE, hash_distance, perceptual_hash

HEX = re.compile(rf"[0-9a-f]{{{HASH_SIZE**2 // 4}}}")

# What the bench measured at COPY_DISTANCE (docs/libraries.md, "Duplicates in tiers: the copy tier,
# measured"), a little below: a change to the hash or its trim that loses copies fails here.
RECALL_FLOORS = {
    "jpeg": 0.97,
    "resize": 0.97,
    "brightness": 0.97,
    "contrast": 0.97,
    "screenshot": 0.45,  # the uniform margins; a window's title bar and side panel are not trimmed
    "rotate": 0.45,  # 1 degree almost always, 3 degrees seldom
    "crop": 0.0,  # a global hash does not survive a crop to 85-90%: the embedding tier's case
}


@pytest.fixture(scope="module")
def distances() -> Distances:
    items = build_items()
    return Distances.of(items, [perceptual_hash(decoded(item)) for item in items], hash_distance)


@pytest.mark.slow
def test_no_distinct_picture_is_a_copy_at_the_default_threshold(distances):
    scores = distances.scores(COPY_DISTANCE)
    assert scores["all"].false == 0, [
        (distances.items[i].name, distances.items[i].group, distances.items[j].name, distances.items[j].group, d)
        for i, j, d in distances.distinct
        if d <= COPY_DISTANCE
    ]
    assert scores["all"].precision >= 0.99


@pytest.mark.slow
@pytest.mark.parametrize("kind,floor", RECALL_FLOORS.items())
def test_copies_of_each_transformation_are_found_at_the_default_threshold(distances, kind, floor):
    assert distances.scores(COPY_DISTANCE)[kind].recall >= floor


@pytest.mark.slow
def test_the_default_threshold_is_the_one_the_curve_gives(distances):
    assert COPY_DISTANCE == pick_threshold(distances)
    assert distances.scores(COPY_DISTANCE)["all"].recall >= 0.65


# --- the hash and the distance ---------------------------------------------------------------


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return photos()["chelsea"]


def test_distance_counts_the_differing_bits():
    zero = "0" * 64
    assert hash_distance(zero, zero) == 0
    assert hash_distance(zero, "0" * 63 + "1") == 1
    assert hash_distance(zero, "8" + "0" * 63) == 1
    assert hash_distance(zero, "f" * 64) == 256
    assert hash_distance("0f" * 32, "f0" * 32) == hash_distance("f0" * 32, "0f" * 32) == 256


def test_distance_refuses_hashes_of_different_lengths():
    with pytest.raises(ValueError, match="different lengths"):
        hash_distance("0" * 64, "0" * 16)


def test_hash_is_fixed_length_lowercase_hex_and_repeatable(photo):
    first = perceptual_hash(photo)
    assert HEX.fullmatch(first)
    assert perceptual_hash(photo.copy()) == first


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "1"])
def test_every_pixel_mode_hashes(photo, mode):
    converted = photo.convert("L").convert(mode) if mode in ("I;16", "1") else photo.convert(mode)
    assert HEX.fullmatch(perceptual_hash(converted))


@pytest.mark.parametrize("mode", ["L", "P", "RGBA"])
def test_the_same_picture_in_another_mode_is_a_copy(photo, mode):
    assert hash_distance(perceptual_hash(photo), perceptual_hash(photo.convert(mode))) <= COPY_DISTANCE


def test_transparency_is_dropped_as_the_models_input_drops_it(photo):
    faded = photo.convert("RGBA")
    faded.putalpha(40)
    assert perceptual_hash(faded) == perceptual_hash(photo)


@pytest.mark.parametrize("size", [(1, 1), (2, 1), (8192, 1), (1, 8192), (4000, 3)])
def test_tiny_and_extreme_shapes_hash(size):
    pixels = np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    assert HEX.fullmatch(perceptual_hash(Image.fromarray(pixels)))


def test_a_uniform_picture_is_not_trimmed_away():
    assert HEX.fullmatch(perceptual_hash(Image.new("RGB", (640, 480), (255, 255, 255))))


def test_a_uniform_margin_is_trimmed(photo):
    framed = perceptual_hash(with_margin(photo, (255, 255, 255)))
    assert hash_distance(framed, perceptual_hash(photo)) <= COPY_DISTANCE // 4


def test_distinct_photos_are_far_apart():
    pictures = photos()
    assert hash_distance(perceptual_hash(pictures["chelsea"]), perceptual_hash(pictures["coffee"])) > COPY_DISTANCE
