"""OpenCLIP's text tokenizers without torch or transformers, run by the ``tokenizers`` library.

Two kinds (the ``tokenizer`` column of the model catalog):

- ``clip``: open_clip's own BPE. ``export_tokenizer`` writes its vocabulary and merges as a
  ``tokenizer.json``; ``ClipTokenizer`` gives the same ids as ``open_clip.get_tokenizer``.
- ``hf``: a Hugging Face tokenizer (XLM-RoBERTa's for ``xlm-roberta-base-ViT-B-32``: 100 languages).
  Its fast tokenizer already is a ``tokenizers`` pipeline; it is saved with open_clip's padding and
  truncation, and ``HfTokenizer`` gives the same ids as open_clip's ``HFTokenizer``.
- ``hf-canonicalize``: the same, with open_clip's ``canonicalize`` cleaning before it (lower case,
  punctuation removed: SigLIP's and SigLIP 2's tokenizers, context length 64).

Export runs at bake time (open_clip, and transformers for ``hf``, installed); loading needs only
``tokenizers`` and ``ftfy``. Tests check both kinds against open_clip on a corpus.
"""

from __future__ import annotations

import html
import string
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

# open_clip's pre-tokenization: contractions, runs of letters, single digits, runs of other symbols.
CLIP_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
START, END = "<start_of_text>", "<end_of_text>"
KINDS = ("clip", "hf", "hf-canonicalize")
HF_KIND_OF_CLEANING = {"_clean_whitespace": "hf", "_clean_canonicalize": "hf-canonicalize"}
"""open_clip's cleaning function (``HFTokenizer.clean_fn``) -> the kind of tokenizer it makes."""
PUNCTUATION = str.maketrans("", "", string.punctuation)


def clean(text: str) -> str:
    """open_clip's 'lower' cleaning: fix mojibake, unescape HTML twice, fold white space, lower case."""
    return clean_whitespace(text).lower()


def clean_whitespace(text: str) -> str:
    """open_clip's 'whitespace' cleaning (its HF tokenizers' default): as ``clean``, case kept."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split())


def clean_canonical(text: str) -> str:
    """open_clip's 'canonicalize' cleaning (SigLIP's): as ``clean_whitespace``, then underscores to
    spaces, ASCII punctuation removed, lower case, white space folded."""
    text = clean_whitespace(text).replace("_", " ").translate(PUNCTUATION).lower()
    return " ".join(text.split())


def tokenizer_kind(tokenizer: Any) -> str:
    """``clip``, ``hf`` or ``hf-canonicalize`` for a tokenizer from ``open_clip.get_tokenizer``."""
    if hasattr(getattr(tokenizer, "tokenizer", None), "backend_tokenizer"):
        cleaning = getattr(tokenizer.clean_fn, "__name__", "")
        if cleaning not in HF_KIND_OF_CLEANING:
            raise ValueError(f"the onnx engine has no open_clip HF tokenizer cleaning {cleaning or 'unnamed'}")
        return HF_KIND_OF_CLEANING[cleaning]
    if hasattr(getattr(tokenizer, "tokenizer", tokenizer), "bpe_ranks"):
        return "clip"
    raise ValueError(f"the onnx engine has no tokenizer like open_clip's {type(tokenizer).__name__}")


def export_tokenizer(tokenizer: Any, path: Path) -> str:
    """Write an ``open_clip.get_tokenizer`` tokenizer as a tokenizers JSON file; returns its kind."""
    kind = tokenizer_kind(tokenizer)
    if kind != "clip":
        export_hf_tokenizer(tokenizer, path)
    else:
        export_clip_tokenizer(getattr(tokenizer, "tokenizer", tokenizer), path)
    return kind


def load_tokenizer(path: Path, kind: str) -> ClipTokenizer | HfTokenizer:
    if kind not in KINDS:
        raise ValueError(f"tokenizer kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "clip":
        return ClipTokenizer(path)
    return HfTokenizer(path, canonical=kind == "hf-canonicalize")


def export_hf_tokenizer(tokenizer: Any, path: Path) -> None:
    """An open_clip ``HFTokenizer``: its fast tokenizer's pipeline, padded and truncated as open_clip does
    (``padding='max_length'``, ``truncation=True``: special tokens kept, then the pad id)."""
    from tokenizers import Tokenizer

    if getattr(tokenizer, "tokenizer_mode", "") or getattr(tokenizer, "strip_sep_token", False):
        raise ValueError("the onnx engine supports open_clip HF tokenizers in their standard mode only")
    fast = tokenizer.tokenizer
    pipeline = Tokenizer.from_str(fast.backend_tokenizer.to_str())  # a copy: the original stays as it was
    pipeline.enable_truncation(max_length=tokenizer.context_length)
    pipeline.enable_padding(length=tokenizer.context_length, pad_id=fast.pad_token_id, pad_token=fast.pad_token)
    pipeline.save(str(path))


def export_clip_tokenizer(simple_tokenizer: Any, path: Path) -> None:
    """Write an open_clip ``SimpleTokenizer``'s vocabulary and merges as a tokenizers JSON file."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    merges = sorted(simple_tokenizer.bpe_ranks, key=simple_tokenizer.bpe_ranks.get)
    bpe = models.BPE(vocab=dict(simple_tokenizer.encoder), merges=list(merges), end_of_word_suffix="</w>")
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(CLIP_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([START, END])
    tokenizer.save(str(path))


class HfTokenizer:
    """A Hugging Face tokenizer saved by ``export_hf_tokenizer``: padding and truncation are in the file.
    ``canonical``: texts get open_clip's 'canonicalize' cleaning (kind ``hf-canonicalize``), else its
    'whitespace' cleaning (kind ``hf``)."""

    def __init__(self, path: Path, *, canonical: bool = False):
        from tokenizers import Tokenizer

        self.clean = clean_canonical if canonical else clean_whitespace
        self.tokenizer = Tokenizer.from_file(str(path))
        padding = self.tokenizer.padding
        if not padding or not padding.get("length"):
            raise ValueError(f"{path}: a Hugging Face tokenizer.json without fixed-length padding (not from bake)")
        self.context_length = int(padding["length"])

    def __call__(self, texts: list[str]) -> np.ndarray:
        """int64 ids, one row of ``context_length`` per text, as open_clip's ``HFTokenizer`` gives them."""
        encodings = self.tokenizer.encode_batch([self.clean(text) for text in texts])
        return np.array([encoding.ids for encoding in encodings], dtype=np.int64).reshape(
            len(texts), self.context_length
        )


class ClipTokenizer:
    def __init__(self, path: Path, context_length: int = 77):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path))
        self.start = self._id_of(START)
        self.end = self._id_of(END)
        self.context_length = context_length

    def _id_of(self, token: str) -> int:
        found = self.tokenizer.token_to_id(token)
        if found is None:
            raise ValueError(f"the tokenizer file has no {token} token")
        return int(found)

    def __call__(self, texts: list[str]) -> NDArray[np.int64]:
        """int64 ids, one row of ``context_length`` per text: start, tokens, end, zero padding."""
        rows = np.zeros((len(texts), self.context_length), dtype=np.int64)
        encodings = self.tokenizer.encode_batch([clean(text) for text in texts], add_special_tokens=False)
        for row, encoding in zip(rows, encodings):
            ids = [self.start, *encoding.ids, self.end][: self.context_length]
            ids[-1] = self.end  # a truncated text still ends with the end token, as in open_clip
            row[: len(ids)] = ids
        return rows
