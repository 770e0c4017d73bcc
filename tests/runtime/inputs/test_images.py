"""Image preparation matches open_clip's own transform, and big JPEGs are decoded at reduced scale."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from runtime.inputs.images import (
    ImageLimits,
    ImageSpec,
    decode_image,
    image_to_library_pixels,
    image_to_pixels,
    normalize,
    prepare_image,
)
from runtime.libraries.perceptual import COPY_DISTANCE, hash_distance
from tests.fakes.images import image_bytes


@pytest.mark.parametrize("size", [(64, 48), (48, 64), (32, 32), (301, 97), (20, 10)])
def test_preparation_equals_open_clip_preprocess(tiny_settings, size):
    import open_clip

    open_clip.add_model_config(tiny_settings.model_config_path)
    _, _, preprocess = open_clip.create_model_and_transforms(tiny_settings.model, pretrained=None)
    image = Image.open(io.BytesIO(image_bytes(11, size=size)))
    expected = preprocess(image).numpy()
    spec = ImageSpec(size=32)
    ours = normalize(prepare_image(image, ImageSpec(32))[None], spec)[0]
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() < 1e-5


@pytest.mark.parametrize("version", ["ViT-B-32-SigLIP2-256/webli", "MobileCLIP2-S0/dfndr2b", "ViT-B-16-SigLIP2/webli"])
@pytest.mark.parametrize("size", [(300, 200), (97, 301), (256, 256), (40, 30)])
def test_preparation_equals_open_clip_for_each_catalogued_preprocessing(version, size):
    """SigLIP's squash resize and mean/std of 0.5, MobileCLIP 2's bilinear resize and mean 0 / std 1: the
    pixels open_clip's inference transform gives for the tag's own preprocessing settings."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from runtime.engines.catalog import find
    from runtime.inputs.images import catalog_spec

    model = find(*version.split("/"))
    assert model is not None
    spec = catalog_spec(model)
    cfg = PreprocessCfg(
        size=spec.size, mean=spec.mean, std=spec.std, interpolation=spec.interpolation, resize_mode=spec.resize
    )
    image = Image.open(io.BytesIO(image_bytes(14, size=size)))
    expected = image_transform_v2(cfg, is_train=False)(image).numpy()
    ours = normalize(prepare_image(image, spec)[None], spec)[0]
    assert ours.shape == expected.shape == (3, spec.size, spec.size)
    assert np.abs(ours - expected).max() < 1e-5


@pytest.mark.slow
def test_large_jpeg_is_decoded_at_reduced_scale():
    data = image_bytes(12, size=(4096, 3072), fmt="JPEG", quality=90)
    reduced = decode_image(data, "img", ImageLimits(max_side=4096), draft_to=448)
    assert reduced.size == (1024, 768)  # libjpeg scaled by 1/4 while decoding, never below 448
    full = decode_image(data, "img", ImageLimits(max_side=4096))
    assert full.size == (4096, 3072)
    a = prepare_image(reduced, ImageSpec(224)).astype(np.float32) / 255
    b = prepare_image(full, ImageSpec(224)).astype(np.float32) / 255
    assert np.abs(a - b).mean() < 0.01


def test_small_jpeg_is_not_reduced():
    data = image_bytes(13, size=(640, 480), fmt="JPEG")
    assert decode_image(data, "img", ImageLimits(max_side=4096), draft_to=448).size == (640, 480)


def test_transparent_and_grey_images_become_rgb():
    for mode in ("RGBA", "L", "P", "LA"):
        out = io.BytesIO()
        Image.new(mode, (40, 30)).save(out, format="PNG")
        image = decode_image(out.getvalue(), "img", ImageLimits(max_side=4096))
        assert prepare_image(image, ImageSpec(32)).shape == (32, 32, 3)


def test_a_library_decode_gives_the_model_input_the_perceptual_hash_and_the_upright_size():
    """The hash is of the full, upright frame: an EXIF-turned copy of a picture hashes as the picture, and
    the size is the original's (before the reduced-scale decode), turned as the picture is."""
    spec, limits = ImageSpec(224), ImageLimits(max_side=4096)
    picture = Image.open(io.BytesIO(image_bytes(14, size=(1600, 1200), fmt="PNG")))
    turned = picture.transpose(Image.Transpose.ROTATE_90)  # stored on its side, EXIF says turn it back
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = io.BytesIO()
    turned.save(stored, format="JPEG", quality=90, exif=exif)
    plain = io.BytesIO()
    picture.save(plain, format="PNG")

    decoded = image_to_library_pixels(stored.getvalue(), "img", spec, limits, draft_to=448, budget=None)
    original = image_to_library_pixels(plain.getvalue(), "img", spec, limits, draft_to=448, budget=None)
    assert decoded.size == original.size == (1600, 1200)
    assert decoded.pixels.shape == (224, 224, 3)
    assert np.array_equal(
        decoded.pixels, image_to_pixels(stored.getvalue(), "img", spec, limits, draft_to=448, budget=None)
    )
    assert len(original.perceptual_hash) == 64  # 256 bits
    assert hash_distance(decoded.perceptual_hash, original.perceptual_hash) <= COPY_DISTANCE
    other = image_to_library_pixels(image_bytes(15, size=(1600, 1200)), "img", spec, limits, draft_to=448, budget=None)
    assert hash_distance(other.perceptual_hash, original.perceptual_hash) > COPY_DISTANCE
