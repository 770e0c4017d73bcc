"""The models this project deploys, as data: ``catalog.csv`` (one row per architecture and pretrained tag).

Columns: ``architecture`` and ``pretrained`` (OpenCLIP's names), ``dimension`` (vector length),
``image_size`` (model input, px), ``tokenizer`` (``clip``: OpenCLIP's BPE; ``hf``: a Hugging Face
tokenizer, e.g. XLM-RoBERTa's; ``hf-canonicalize``: a Hugging Face tokenizer with open_clip's
``canonicalize`` cleaning, lower case and no punctuation, as SigLIP's), ``engines`` (the engines that
run it: ``torch``, ``onnx``), and the image preprocessing open_clip defines for the pretrained tag:
``image_mean`` and ``image_std`` (three numbers each), ``resize`` (``shortest``: shortest side to the
input size, then a centre crop; ``squash``: the whole image to the input square) and ``interpolation``
(``bicubic`` or ``bilinear``). The preprocessing is here because open_clip knows it only when it loads a
pretrained tag, not for a local checkpoint (bake's) or random weights (``--smoke``).
Read by the runtime (bake, the SageMaker front engine) and by the CDK app (``infra/config.py``);
stdlib only, so the CDK app and the Lambda image can read it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CATALOG_FILE = Path(__file__).with_name("catalog.csv")
TOKENIZERS = ("clip", "hf", "hf-canonicalize")
ENGINES = ("torch", "onnx")
RESIZE_MODES = ("shortest", "squash")
INTERPOLATIONS = ("bicubic", "bilinear")


@dataclass(frozen=True)
class CatalogModel:
    architecture: str
    pretrained: str
    dimension: int
    image_size: int
    tokenizer: str
    engines: tuple[str, ...]
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    resize: str
    interpolation: str

    @property
    def version(self) -> str:
        return f"{self.architecture}/{self.pretrained}"

    def runs_on(self, engine: str) -> bool:
        return engine in self.engines


@cache
def catalog() -> tuple[CatalogModel, ...]:
    with CATALOG_FILE.open(newline="", encoding="utf-8") as file:
        models = tuple(_row(row, line) for line, row in enumerate(csv.DictReader(file), start=2))
    versions = [model.version for model in models]
    duplicates = sorted({version for version in versions if versions.count(version) > 1})
    if duplicates:
        raise ValueError(f"{CATALOG_FILE.name}: listed twice: {', '.join(duplicates)}")
    return models


def find(architecture: str, pretrained: str) -> CatalogModel | None:
    """The catalog's row for this model, or None when it is not listed (e.g. a custom config)."""
    return next((m for m in catalog() if (m.architecture, m.pretrained) == (architecture, pretrained)), None)


def first_pretrained(architecture: str) -> str | None:
    """The first tag the catalog lists for ``architecture`` (its default), or None when it lists none."""
    return next((m.pretrained for m in catalog() if m.architecture == architecture), None)


def versions() -> list[str]:
    return [model.version for model in catalog()]


def _row(row: dict[str, str], line: int) -> CatalogModel:
    where = f"{CATALOG_FILE.name} line {line}"
    engines = tuple(row["engines"].split())
    if row["tokenizer"] not in TOKENIZERS:
        raise ValueError(f"{where}: tokenizer {row['tokenizer']!r} is not one of {', '.join(TOKENIZERS)}")
    if not engines or any(engine not in ENGINES for engine in engines):
        raise ValueError(f"{where}: engines {row['engines']!r} must be some of {', '.join(ENGINES)}")
    if row["resize"] not in RESIZE_MODES:
        raise ValueError(f"{where}: resize {row['resize']!r} is not one of {', '.join(RESIZE_MODES)}")
    if row["interpolation"] not in INTERPOLATIONS:
        raise ValueError(f"{where}: interpolation {row['interpolation']!r} is not one of {', '.join(INTERPOLATIONS)}")
    return CatalogModel(
        architecture=row["architecture"],
        pretrained=row["pretrained"],
        dimension=int(row["dimension"]),
        image_size=int(row["image_size"]),
        tokenizer=row["tokenizer"],
        engines=engines,
        image_mean=_three_numbers(row["image_mean"], f"{where}: image_mean"),
        image_std=_three_numbers(row["image_std"], f"{where}: image_std"),
        resize=row["resize"],
        interpolation=row["interpolation"],
    )


def _three_numbers(text: str, what: str) -> tuple[float, float, float]:
    """Three numbers separated by spaces (one per colour channel)."""
    try:
        first, second, third = (float(number) for number in text.split())
    except ValueError:
        raise ValueError(f"{what} {text!r} must be three numbers separated by spaces") from None
    return first, second, third
