"""The duplicates a library already holds, in groups by tier, each with a suggested keeper.

- ``exact``: images with the same content hash (the same file);
- ``copy``: images whose perceptual hashes differ in at most ``COPY_DISTANCE`` bits (the same picture
  re-encoded or resized), found from the stored hashes alone: every pair compared, a row of XORs and bit
  counts at a time (the hash is too long and the distance too wide for the pigeonhole's exact blocks to
  narrow anything: 49 blocks of 5 bits);
- ``similar`` (only with a ``threshold``): images scoring at or above it, one search per image (the
  store's ``search_like``), the pairs already grouped as exact or copies left out.

Images linked by pairs form a group (connected components). The keeper is the largest picture (pixel
area; an image without a size counts 0), then the one with the most metadata, then the oldest, then the
lowest id. Groups are ordered by tier, then keeper id, and paged by position (``limit``, ``next_token``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.errors import BadRequest
from runtime.libraries.perceptual import COPY_DISTANCE
from runtime.libraries.store import (
    COPY,
    EXACT,
    MAX_PAGE,
    SIMILAR,
    TIERS,
    LibraryStore,
    Stored,
    decode_token,
    encode_token,
)
from runtime.libraries.values import check_score


@dataclass(frozen=True)
class Group:
    tier: str
    keeper: Stored
    """The image to keep: the largest, then the one with the most metadata."""
    others: list[Stored]
    """The rest of the group, in id order."""


@dataclass(frozen=True)
class GroupPage:
    groups: list[Group]
    next_token: str | None
    scanned: int
    """How many images the scan read."""


def find_duplicates(
    store: LibraryStore[Any], name: str, *, model_version: str, threshold: float | None = None
) -> list[Group]:
    """Every group of duplicates the library holds, exact first, then copies, then similar images."""
    check_score(threshold, "threshold")
    images = store.every_image(name, "duplicates")
    by_id = {image.image.id: image for image in images}
    exact = components(images, exact_pairs(images))
    copies = components(images, copy_pairs(images))
    groups = [group_of(EXACT, members, by_id) for members in exact]
    grouped = same_group(exact + copies)
    groups += [group_of(COPY, members, by_id) for members in copies if not inside(members, exact)]
    if threshold is not None:
        pairs = [pair for pair in similar_pairs(store, name, images, threshold, model_version) if pair not in grouped]
        groups += [group_of(SIMILAR, members, by_id) for members in components(images, pairs)]
    return sorted(groups, key=lambda group: (TIERS.index(group.tier), group.keeper.image.id))


def page_of(groups: list[Group], limit: int, next_token: str | None, scanned: int) -> GroupPage:
    if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit: must be between 1 and {MAX_PAGE}", code="invalid_value")
    start = decode_token(next_token).get("from", 0) if next_token else 0
    if not isinstance(start, int) or start < 0:
        raise BadRequest("next_token: not a token this API gave", code="invalid_next_token")
    end = start + limit
    return GroupPage(groups[start:end], encode_token({"from": end}) if end < len(groups) else None, scanned)


def exact_pairs(images: list[Stored]) -> list[tuple[str, str]]:
    by_hash: dict[str, list[str]] = defaultdict(list)
    for image in images:
        if image.content_hash:
            by_hash[image.content_hash].append(image.image.id)
    return [(ids[0], other) for ids in by_hash.values() for other in ids[1:]]


def copy_pairs(images: list[Stored]) -> list[tuple[str, str]]:
    """Pairs whose perceptual hashes differ in at most ``COPY_DISTANCE`` bits: each hash against every
    later one, one vectorised XOR and bit count a row (hashes as rows of 64-bit words)."""
    hashed = [image for image in images if image.perceptual_hash]
    pairs: list[tuple[str, str]] = []
    for length in sorted({len(image.perceptual_hash or "") for image in hashed}):
        same = [image for image in hashed if len(image.perceptual_hash or "") == length]
        words = hash_words([image.perceptual_hash or "" for image in same])
        for first in range(len(same) - 1):
            distances = np.bitwise_count(words[first + 1 :] ^ words[first]).sum(axis=1)
            for second in (np.flatnonzero(distances <= COPY_DISTANCE) + first + 1).tolist():
                pairs.append(ordered(same[first].image.id, same[second].image.id))
    return sorted(pairs)


def hash_words(hashes: list[str]) -> np.ndarray:
    """Hex hashes of one length as rows of big-endian 64-bit words (the last word zero-padded)."""
    padded = [value.ljust(-(-len(value) // 16) * 16, "0") for value in hashes]
    return np.array([[int(value[i : i + 16], 16) for i in range(0, len(value), 16)] for value in padded], np.uint64)


def ordered(first: str, second: str) -> tuple[str, str]:
    return (first, second) if first < second else (second, first)


def similar_pairs(
    store: LibraryStore[Any], name: str, images: list[Stored], threshold: float, model_version: str
) -> list[tuple[str, str]]:
    """One search per image (``max_top_k`` at most): the pairs scoring at or above ``threshold``."""
    pairs: set[tuple[str, str]] = set()
    for image in images:
        found = store.search_like(
            name, image.image.id, model_version=model_version, top_k=store.settings.max_top_k, min_score=threshold
        )
        pairs.update(ordered(image.image.id, match.id) for match in found.matches)
    return sorted(pairs)


def components(images: list[Stored], pairs: list[tuple[str, str]]) -> list[list[str]]:
    """The groups (2 or more images) the pairs link, each in id order (union-find)."""
    parent = {image.image.id: image.image.id for image in images}

    def root(image_id: str) -> str:
        while parent[image_id] != image_id:
            parent[image_id] = parent[parent[image_id]]
            image_id = parent[image_id]
        return image_id

    for first, second in pairs:
        if first in parent and second in parent:
            parent[root(first)] = root(second)
    members: dict[str, list[str]] = defaultdict(list)
    for image_id in parent:
        members[root(image_id)].append(image_id)
    return [sorted(group) for group in members.values() if len(group) > 1]


def same_group(groups: list[list[str]]) -> set[tuple[str, str]]:
    """Every pair of images that share a group (left out of the similar tier)."""
    return {(a, b) for group in groups for i, a in enumerate(group) for b in group[i + 1 :]}


def inside(members: list[str], groups: list[list[str]]) -> bool:
    """Whether a copy group is one exact group over again (the same files have the same hash)."""
    return any(set(members) <= set(group) for group in groups)


def group_of(tier: str, members: list[str], by_id: dict[str, Stored]) -> Group:
    images = [by_id[image_id] for image_id in members]
    keeper = min(images, key=keeper_rank)
    return Group(tier, keeper, [image for image in images if image.image.id != keeper.image.id])


def keeper_rank(image: Stored) -> tuple[int, int, float, str]:
    area = image.size[0] * image.size[1] if image.size else 0
    metadata = len(json.dumps(image.image.metadata, separators=(",", ":"))) if image.image.metadata else 0
    return (-area, -metadata, image.image.create_time, image.image.id)
