"""The copy tier's measuring set: near-copies of real photographs, and the non-copies beside them.

The photographs are scikit-image's sample photos, the ones bundled in its wheel (no download):
colour and greyscale pictures of people, animals, objects, textures, a retina, a page of text. Each
is stored as a PNG (the image a library holds) and copied as people copy pictures: re-encoded as JPEG
at quality 30-95, resized 0.25x-2x, cropped to 85%, rotated 1-3 degrees, made brighter, darker or of
other contrast, and captured in a screenshot (a uniform margin, or a window's title bar, side panel
and status bar around it). The non-copies are the other photos, their copies, and crops of regions
that do not overlap (four quarters of every photo, which are pictures of their own, of each other
too). The stereo pair of the same motorcycle from two viewpoints is there as two distinct photos.

Every file is read as the server reads it (``runtime.inputs.images.decode_image``: open, draft to the
model's 224 px, EXIF upright), so what is measured is the hash the server stores.
bench/bench_duplicates.py prints the figures; tests/runtime/libraries/test_perceptual.py holds them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from runtime.inputs.images import ImageLimits, decode_image

PHOTOS = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "moon",
    "rocket",
    "retina",
    "hubble_deep_field",
    "immunohistochemistry",
    "page",
    "text",
    "brick",
    "grass",
    "gravel",
    "cell",
)
"""The bundled photographs (skimage.data), besides the stereo pair; not the synthetic patterns or logos."""
DRAFT_TO = 224  # the model's input size: the server drafts JPEGs to it before hashing
SAVED_QUALITY = 90  # a copy that is not about JPEG quality is saved as a camera or an editor would


@dataclass(frozen=True)
class Item:
    """One file of the set."""

    group: str
    """The picture it shows: items of one group are copies of each other."""
    source: str
    """The photo it comes from (a region's group is its own, its source its photo's)."""
    kind: str
    """``original``, ``region``, or the transformation's class (``jpeg``, ``resize``...)."""
    name: str
    data: bytes = field(repr=False)


def photos() -> dict[str, Image.Image]:
    """The photographs, by name (RGB or greyscale)."""
    from skimage import data

    pictures = {name: Image.fromarray(getattr(data, name)()) for name in PHOTOS}
    left, right, _ = data.stereo_motorcycle()
    pictures["motorcycle_left"], pictures["motorcycle_right"] = Image.fromarray(left), Image.fromarray(right)
    return pictures


# --- the transformations -------------------------------------------------------------------


def encode(image: Image.Image, format: str = "JPEG", quality: int = SAVED_QUALITY) -> bytes:
    out = io.BytesIO()
    if format == "JPEG":
        image.save(out, format="JPEG", quality=quality)
    else:
        image.save(out, format=format)
    return out.getvalue()


def resized(image: Image.Image, factor: float) -> Image.Image:
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def cropped(image: Image.Image, fraction: float, anchor: str) -> Image.Image:
    """``fraction`` of each side, at the centre or a corner (``tl``, ``br``)."""
    width, height = round(image.width * fraction), round(image.height * fraction)
    left, top = {"centre": ((image.width - width) // 2, (image.height - height) // 2), "tl": (0, 0)}.get(
        anchor, (image.width - width, image.height - height)
    )
    return image.crop((left, top, left + width, top + height))


def rotated(image: Image.Image, degrees: float) -> Image.Image:
    """Turned as a straightening tool turns a photo: the corners it would leave empty cropped off."""
    turned = image.rotate(degrees, Image.Resampling.BICUBIC, expand=False)
    radians = np.deg2rad(abs(degrees))
    # the largest centred rectangle of the same aspect inside the turned frame
    scale = 1 / (np.cos(radians) + np.sin(radians) * max(image.width / image.height, image.height / image.width))
    return cropped(turned, float(scale), "centre")


def with_margin(image: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """A screenshot of a picture shown in a uniform frame (a viewer's margin), 8% of the longer side."""
    pad = max(4, round(0.08 * max(image.size)))
    canvas = Image.new("RGB", (image.width + 2 * pad, image.height + 2 * pad), colour)
    canvas.paste(image.convert("RGB"), (pad, pad))
    return canvas


def in_window(image: Image.Image) -> Image.Image:
    """A screenshot of a picture in an application window: title bar with buttons and a title, a side
    panel of icons and labels, a status bar."""
    bar, side, status = 32, 96, 22
    width, height = image.width + side + 8, image.height + bar + status + 8
    canvas = Image.new("RGB", (width, height), (236, 236, 238))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, width, bar - 1), fill=(52, 53, 58))
    for i, colour in enumerate(((255, 95, 86), (255, 189, 46), (39, 201, 63))):
        draw.ellipse((10 + 20 * i, 10, 22 + 20 * i, 22), fill=colour)
    draw.rectangle((width // 2 - 60, 12, width // 2 + 60, 20), fill=(170, 170, 176))  # the title
    draw.rectangle((0, bar, side - 1, height), fill=(246, 246, 248))
    for row in range(bar + 12, height - status - 20, 34):
        draw.rectangle((10, row, 28, row + 18), fill=(90, 130, 200))  # an icon
        draw.rectangle((36, row + 6, 84, row + 12), fill=(120, 120, 126))  # its label
    draw.rectangle((0, height - status, width, height), fill=(222, 222, 226))
    draw.rectangle((side + 8, height - status + 8, side + 120, height - status + 14), fill=(120, 120, 126))
    canvas.paste(image.convert("RGB"), (side + 4, bar + 4))
    return canvas


Copy = Callable[[Image.Image], bytes]

TRANSFORMATIONS: dict[str, dict[str, Copy]] = {
    "jpeg": {f"jpeg q{q}": (lambda im, q=q: encode(im, quality=q)) for q in (30, 50, 70, 95)},
    "resize": {f"resize {f}x": (lambda im, f=f: encode(resized(im, f))) for f in (0.25, 0.5, 0.75, 1.5, 2.0)},
    "crop": {
        f"crop {round(f * 100)}% {a}": (lambda im, f=f, a=a: encode(cropped(im, f, a)))
        for f, a in ((0.9, "centre"), (0.85, "centre"), (0.85, "tl"), (0.85, "br"))
    },
    "rotate": {f"rotate {d} deg": (lambda im, d=d: encode(rotated(im, d))) for d in (1, -2, 3)},
    "brightness": {
        f"brightness x{b}": (lambda im, b=b: encode(ImageEnhance.Brightness(im).enhance(b))) for b in (0.7, 1.3)
    },
    "contrast": {f"contrast x{c}": (lambda im, c=c: encode(ImageEnhance.Contrast(im).enhance(c))) for c in (0.7, 1.3)},
    "screenshot": {
        "white margin (PNG)": lambda im: encode(with_margin(im, (255, 255, 255)), "PNG"),
        "black margin (PNG)": lambda im: encode(with_margin(im, (0, 0, 0)), "PNG"),
        "window (PNG)": lambda im: encode(in_window(im), "PNG"),
        "window (JPEG)": lambda im: encode(in_window(im)),
    },
}
"""Each transformation class and its copies: a photo to the bytes of its copy."""
COPY_KINDS = tuple(TRANSFORMATIONS)
QUARTERS = {"top-left": (0, 0), "top-right": (1, 0), "bottom-left": (0, 1), "bottom-right": (1, 1)}


def quarter(image: Image.Image, column: int, row: int) -> Image.Image:
    width, height = image.width // 2, image.height // 2
    return image.crop((column * width, row * height, (column + 1) * width, (row + 1) * height))


def build_items() -> list[Item]:
    """Every file of the set: each photo (PNG), its copies, and its four quarters (JPEG)."""
    items = []
    for name, photo in photos().items():
        items.append(Item(name, name, "original", "original (PNG)", encode(photo, "PNG")))
        for kind, copies in TRANSFORMATIONS.items():
            items.extend(Item(name, name, kind, label, copy(photo)) for label, copy in copies.items())
        for label, (column, row) in QUARTERS.items():
            items.append(
                Item(f"{name}/{label}", name, "region", f"quarter {label}", encode(quarter(photo, column, row)))
            )
    return items


def decoded(item: Item) -> Image.Image:
    """The image the server hashes: decoded as every input path decodes it (drafted to the model's size,
    EXIF upright), in RGB."""
    return decode_image(item.data, "image", ImageLimits(), draft_to=DRAFT_TO).convert("RGB")


# --- the pairs and the scores --------------------------------------------------------------


def copy_pairs(items: Sequence[Item]) -> list[tuple[int, int]]:
    """(original, copy) index pairs: each stored photo with each of its copies."""
    originals = {item.group: i for i, item in enumerate(items) if item.kind == "original"}
    return [(originals[item.group], i) for i, item in enumerate(items) if item.kind in COPY_KINDS]


def distinct_pairs(items: Sequence[Item]) -> list[tuple[int, int]]:
    """Index pairs of different pictures: different photos (and their copies and quarters), and the
    quarters of one photo with each other. A quarter and its own photo (or a copy of it) overlap: left out."""

    def distinct(a: Item, b: Item) -> bool:
        if a.group == b.group:
            return False
        if a.source != b.source:
            return True
        return a.kind == "region" and b.kind == "region"

    return [(i, j) for i, j in combinations(range(len(items)), 2) if distinct(items[i], items[j])]


@dataclass
class Score:
    """Pair counts at one threshold, for one transformation class or for the whole set."""

    copies: int = 0
    found: int = 0
    """Copies within the threshold (true matches)."""
    false: int = 0
    """Distinct pairs within the threshold (false matches)."""

    @property
    def recall(self) -> float:
        return self.found / self.copies if self.copies else 1.0

    @property
    def precision(self) -> float:
        return self.found / (self.found + self.false) if self.found + self.false else 1.0


@dataclass(frozen=True)
class Distances:
    """Every pair's distance, computed once; scored at any threshold."""

    items: Sequence[Item]
    copies: list[tuple[int, int, int]]
    """(original, copy, distance)."""
    distinct: list[tuple[int, int, int]]

    @classmethod
    def of(cls, items: Sequence[Item], hashes: Sequence[str], distance: Callable[[str, str], int]) -> Distances:
        def measured(pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int, int]]:
            return [(i, j, distance(hashes[i], hashes[j])) for i, j in pairs]

        return cls(items, measured(copy_pairs(items)), measured(distinct_pairs(items)))

    def scores(self, threshold: int) -> dict[str, Score]:
        """Per class (each copy kind and ``region``) and ``all``: a distinct pair counts against the
        class of each of its two files."""
        scores = {kind: Score() for kind in (*COPY_KINDS, "region", "all")}
        for _, j, d in self.copies:
            for key in (self.items[j].kind, "all"):
                scores[key].copies += 1
                scores[key].found += d <= threshold
        for i, j, d in self.distinct:
            if d <= threshold:
                scores["all"].false += 1
                for kind in {self.items[i].kind, self.items[j].kind} - {"original"}:
                    scores[kind].false += 1
        return scores

    def by_copy(self, threshold: int) -> dict[str, Score]:
        """Per copy name (``jpeg q30``...): the recall of each transformation's variants."""
        scores: dict[str, Score] = {}
        for _, j, d in self.copies:
            score = scores.setdefault(self.items[j].name, Score())
            score.copies += 1
            score.found += d <= threshold
        return scores


def closest_distinct(distances: Distances, count: int) -> list[tuple[Item, Item, int]]:
    """The ``count`` distinct pairs nearest each other: what the threshold must stay below."""
    nearest = sorted(distances.distinct, key=lambda pair: pair[2])[:count]
    return [(distances.items[i], distances.items[j], d) for i, j, d in nearest]


MARGIN = 0.2


def pick_threshold(distances: Distances) -> int:
    """The default threshold the curve gives: below the closest distinct pair of the set by a fifth of its
    distance (no false match in the set, and room for pictures closer than any here)."""
    return int(min(d for _, _, d in distances.distinct) * (1 - MARGIN))
