"""The models this project deploys, as data: ``catalog.csv`` (one row per architecture and pretrained tag).

Columns: ``architecture`` and ``pretrained`` (OpenCLIP's names), ``dimension`` (vector length),
``image_size`` (model input, px), ``tokenizer`` (``clip``: OpenCLIP's BPE; ``hf``: a Hugging Face
tokenizer, e.g. XLM-RoBERTa's) and ``engines`` (the engines that run it: ``torch``, ``onnx``).
Read by the runtime (bake, the SageMaker front engine) and by the CDK app (``infra/config.py``);
stdlib only, so the CDK app and the Lambda image can read it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CATALOG_FILE = Path(__file__).with_name("catalog.csv")
TOKENIZERS = ("clip", "hf")
ENGINES = ("torch", "onnx")


@dataclass(frozen=True)
class CatalogModel:
    architecture: str
    pretrained: str
    dimension: int
    image_size: int
    tokenizer: str
    engines: tuple[str, ...]

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


def versions() -> list[str]:
    return [model.version for model in catalog()]


def _row(row: dict[str, str], line: int) -> CatalogModel:
    where = f"{CATALOG_FILE.name} line {line}"
    engines = tuple(row["engines"].split())
    if row["tokenizer"] not in TOKENIZERS:
        raise ValueError(f"{where}: tokenizer {row['tokenizer']!r} is not one of {', '.join(TOKENIZERS)}")
    if not engines or any(engine not in ENGINES for engine in engines):
        raise ValueError(f"{where}: engines {row['engines']!r} must be some of {', '.join(ENGINES)}")
    return CatalogModel(
        architecture=row["architecture"],
        pretrained=row["pretrained"],
        dimension=int(row["dimension"]),
        image_size=int(row["image_size"]),
        tokenizer=row["tokenizer"],
        engines=engines,
    )
