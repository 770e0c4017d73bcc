"""A tiny multilingual OpenCLIP model built offline: an XLM-RoBERTa-shaped text tower (Hugging Face
config, random weights) and a SentencePiece-style Unigram tokenizer trained on a few sentences.

It goes through open_clip's real HF text-encoder path (``hf_model_name`` / ``hf_tokenizer_name``
pointing at a local folder), exactly as ``xlm-roberta-base-ViT-B-32`` does, without any download.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.fakes.model import TinyModel

TINY_XLM_NAME = "tiny-xlm-test-clip"
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-RoBERTa's ids 0..3, mask last
CORPUS = [
    "a photo of a cat",
    "a red square on a white background",
    "una foto de un gato",
    "ein Foto einer Katze auf dem Sofa",
    "une photo d'un chat noir",
    "猫の写真",
    "一只猫的照片",
    "фотография кошки",
    "صورة قطة",
    "고양이 사진",
    "φωτογραφία μιας γάτας",
    "the quick brown fox jumps over the lazy dog 123",
]


def build_tokenizer(folder: Path) -> None:
    """Train a small Unigram tokenizer and save it as a Hugging Face tokenizer folder."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=SPECIAL_TOKENS, unk_token="<unk>")
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<mask>",
    )
    wrapped.save_pretrained(str(folder))


def build_tiny_multilingual_checkpoint(folder: Path, seed: int = 0) -> TinyModel:
    import open_clip
    import torch
    from transformers import XLMRobertaConfig

    text_folder = folder / "tiny-xlm-roberta"
    text_folder.mkdir(parents=True, exist_ok=True)
    build_tokenizer(text_folder)
    vocab_size = len(json.loads((text_folder / "tokenizer.json").read_text())["model"]["vocab"])
    XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,  # 77 tokens, after XLM-R's offset of pad id + 1
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    ).save_pretrained(str(text_folder))
    config = folder / f"{TINY_XLM_NAME}.json"
    config.write_text(
        json.dumps(
            {
                "embed_dim": 512,
                "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
                "text_cfg": {
                    "hf_model_name": str(text_folder),
                    "hf_tokenizer_name": str(text_folder),
                    "hf_pooler_type": "mean_pooler",
                    "hf_model_pretrained": False,
                },
            }
        )
    )
    open_clip.add_model_config(str(config))
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_XLM_NAME, pretrained=None, pretrained_hf=False)
    weights = folder / "tiny-xlm-random.pt"
    torch.save(model.state_dict(), weights)
    return TinyModel(TINY_XLM_NAME, config, weights)
