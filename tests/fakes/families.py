"""Tiny models of the catalog's newer families, built offline with random weights.

Each has its family's tower types at a few layers' width, so the real loading, export and bake code
runs on them in seconds:

- SigLIP 2 / SigLIP i18n: a timm ViT image tower with attention-pool (``map``) head and no projection,
  open_clip's custom text tower (no causal mask, last-token pooling, tanh GELU, projection bias) and a
  Hugging Face tokenizer with open_clip's ``canonicalize`` cleaning, padded to 64 tokens, trained here
  on a few sentences (the real ones come from the hub). 768-d, as the real ones.
- MobileCLIP 2 (S0, S2): a timm FastViT MCi image tower (RepMixer stages, then attention; the blocks
  ``reparameterize_model`` fuses) with timm's own head as the projection, open_clip's custom text tower
  without causal mask, and open_clip's BPE tokenizer. 512-d.

The timm towers are registered as timm models (timm takes no size arguments from open_clip's config);
``register_tiny_towers`` must run in the process that builds them.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from tests.fakes.model import TinyModel

TINY_SIGLIP_NAME = "tiny-siglip-test"
TINY_MOBILECLIP_NAME = "tiny-mobileclip-test"
SIGLIP_VIT, MOBILECLIP_MCI = "vit_tiny_test_siglip", "fastvit_tiny_test_mci"
SIGLIP_SPECIALS = ["<pad>", "</s>", "<unk>"]  # SigLIP's ids 0..2: padding 0, end of text 1
CORPUS = [
    "a photo of a cat",
    "A Red Square, on a white background!",
    "una foto de un gato",
    "ein Foto einer Katze auf dem Sofa",
    "une photo d'un chat noir",
    "猫の写真",
    "the quick brown fox jumps over the lazy dog 123",
    "snake_case_words and dashes - here",
]


def register_tiny_towers() -> None:
    import timm
    from timm.models import register_model
    from timm.models.fastvit import RepConditionalPosEnc, _create_fastvit
    from timm.models.vision_transformer import _create_vision_transformer

    if timm.is_model(SIGLIP_VIT):
        return

    def vit_tiny_test_siglip(pretrained: bool = False, **kwargs):
        # SigLIP's ViT (vit_base_patch32_siglip_256's arguments) at one block; width 768 because
        # SigLIP's image tower has no projection: its width is the vector's dimension.
        args = dict(img_size=32, patch_size=16, embed_dim=768, depth=1, num_heads=12, mlp_ratio=0.5)
        args |= dict(class_token=False, global_pool="map", act_layer="gelu_tanh")
        return _create_vision_transformer("vit_base_patch32_siglip_256", pretrained=False, **(args | kwargs))

    def fastvit_tiny_test_mci(pretrained: bool = False, **kwargs):
        # fastvit_mci0's arguments, one block a stage and narrow.
        args = dict(
            layers=(1, 1, 1, 1),
            embed_dims=(8, 16, 32, 64),
            mlp_ratios=(2, 2, 2, 2),
            se_downsamples=(False, False, True, True),
            pos_embs=(None, None, None, partial(RepConditionalPosEnc, spatial_shape=(7, 7))),
            token_mixers=("repmixer", "repmixer", "repmixer", "attention"),
            lkc_use_act=True,
        )
        return _create_fastvit("fastvit_mci0", pretrained=False, **(args | kwargs))

    vit_tiny_test_siglip.__name__, fastvit_tiny_test_mci.__name__ = SIGLIP_VIT, MOBILECLIP_MCI
    register_model(vit_tiny_test_siglip)
    register_model(fastvit_tiny_test_mci)


def build_siglip_tokenizer(folder: Path) -> int:
    """A small Unigram tokenizer ending each text with ``</s>``, saved as a Hugging Face folder; its size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from runtime.engines.tokenizer import clean_canonical

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=SIGLIP_SPECIALS, unk_token="<unk>")
    tokenizer.train_from_iterator([clean_canonical(text) for text in CORPUS] * 4, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    wrapped.save_pretrained(str(folder))
    return int(tokenizer.get_vocab_size())


def build_tiny_siglip_checkpoint(folder: Path, seed: int = 0) -> TinyModel:
    text_folder = folder / "tiny-siglip-tokenizer"
    text_folder.mkdir(parents=True, exist_ok=True)
    vocab_size = build_siglip_tokenizer(text_folder)
    config = {
        "embed_dim": 768,
        "init_logit_bias": -10,
        "custom_text": True,
        "vision_cfg": {"image_size": 32, "timm_model_name": SIGLIP_VIT, "timm_pool": "map", "timm_proj": "none"},
        "text_cfg": {
            "context_length": 64,
            "vocab_size": vocab_size,
            "hf_tokenizer_name": str(text_folder),
            "tokenizer_kwargs": {"clean": "canonicalize"},
            "width": 32,
            "heads": 2,
            "layers": 1,
            "no_causal_mask": True,
            "proj_bias": True,
            "pool_type": "last",
            "norm_kwargs": {"eps": 1e-6},
            "act_kwargs": {"approximate": "tanh"},
        },
    }
    return _save(folder, TINY_SIGLIP_NAME, config, seed)


def build_tiny_mobileclip_checkpoint(folder: Path, seed: int = 0) -> TinyModel:
    config = {
        "embed_dim": 512,
        "custom_text": True,
        "vision_cfg": {
            "timm_model_name": MOBILECLIP_MCI,
            "timm_pool": "avg",
            "timm_proj": None,
            "timm_drop": 0.0,
            "timm_drop_path": 0.0,
            "image_size": 64,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
            "no_causal_mask": True,
        },
    }
    return _save(folder, TINY_MOBILECLIP_NAME, config, seed)


def _save(folder: Path, name: str, config: dict, seed: int) -> TinyModel:
    import open_clip
    import torch

    register_tiny_towers()
    config_file = folder / f"{name}.json"
    config_file.write_text(json.dumps(config))
    open_clip.add_model_config(str(config_file))
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    _randomize_norms(model)
    weights = folder / f"{name}-random.pt"
    torch.save(model.state_dict(), weights)
    return TinyModel(name, config_file, weights)


def _randomize_norms(model) -> None:
    """Batch norms start as identities (mean 0, variance 1): random statistics make reparameterisation
    fuse something real, as it does with trained weights."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
