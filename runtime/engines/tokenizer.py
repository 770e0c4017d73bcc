"""OpenCLIP's text tokenizer without torch: the same BPE, run by the ``tokenizers`` library.

``export_tokenizer`` (bake time, where open_clip is installed) writes open_clip's vocabulary and
merges as a ``tokenizer.json``; ``ClipTokenizer`` loads it in a few milliseconds and gives the
same token ids as ``open_clip.get_tokenizer`` (a test checks this on a corpus).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

# open_clip's pre-tokenization: contractions, runs of letters, single digits, runs of other symbols.
CLIP_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
START, END = "<start_of_text>", "<end_of_text>"


def clean(text: str) -> str:
    """open_clip's 'lower' cleaning: fix mojibake, unescape HTML twice, fold white space, lower case."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


def export_tokenizer(simple_tokenizer: Any, path: Path) -> None:
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
