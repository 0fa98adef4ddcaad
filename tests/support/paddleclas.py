"""PaddleClas's own preprocessing configs for the catalog models, transcribed by hand: an independent oracle.

Infer.transforms of PaddleClas's ppcls/configs/ImageNet/NextViT/<name>.yaml and
VisionTransformer/<name>.yaml (the paddleclas wheel ships no ImageNet configs). The served
preprocessing (tests/unit/test_preprocess_exactness.py), the in-graph normalization
(tests/unit/test_export_normalization.py) and the evaluate reference (tests/server/test_evaluate.py)
are each checked against these, never against the catalog they come from.
"""

from __future__ import annotations

import yaml

# Infer.transforms of PaddleClas's ppcls/configs/ImageNet/NextViT/<name>.yaml and
# VisionTransformer/<name>.yaml, copied by hand (RESIZE and CROP per file below). The NextViT files
# ask for Pillow bicubic; the ViT files name no interpolation, so ResizeImage's default applies
# (OpenCV INTER_LINEAR).
NEXTVIT_TRANSFORMS = """
- DecodeImage: {to_rgb: True, channel_first: False}
- ResizeImage: {resize_short: RESIZE, interpolation: bicubic, backend: pil}
- CropImage: {size: CROP}
- NormalizeImage: {scale: 1.0/255.0, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], order: ''}
- ToCHWImage:
"""
VIT_TRANSFORMS = """
- DecodeImage: {to_rgb: True, channel_first: False}
- ResizeImage: {resize_short: RESIZE}
- CropImage: {size: CROP}
- NormalizeImage: {scale: 1.0/255.0, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], order: ''}
- ToCHWImage:
"""
PADDLECLAS_CONFIGS: dict[str, tuple[str, int, int]] = {
    "NextViT_small_224": (NEXTVIT_TRANSFORMS, 256, 224),
    "NextViT_base_224": (NEXTVIT_TRANSFORMS, 256, 224),
    "NextViT_large_224": (NEXTVIT_TRANSFORMS, 256, 224),
    "NextViT_small_384": (NEXTVIT_TRANSFORMS, 384, 384),
    "NextViT_base_384": (NEXTVIT_TRANSFORMS, 384, 384),
    "NextViT_large_384": (NEXTVIT_TRANSFORMS, 384, 384),
    "ViT_small_patch16_224": (VIT_TRANSFORMS, 256, 224),
    "ViT_base_patch16_224": (VIT_TRANSFORMS, 256, 224),
    "ViT_large_patch16_224": (VIT_TRANSFORMS, 256, 224),
    "ViT_base_patch16_384": (VIT_TRANSFORMS, 384, 384),
    "ViT_base_patch32_384": (VIT_TRANSFORMS, 384, 384),
    "ViT_large_patch16_384": (VIT_TRANSFORMS, 384, 384),
    "ViT_large_patch32_384": (VIT_TRANSFORMS, 384, 384),
}

PADDLECLAS_RESIZE = {("pil", "bicubic"): "pillow-bicubic", ("cv2", None): "opencv-linear"}

# One model per preprocessing family; test_preprocess_exactness.py ties every other model to these.
FAMILIES = ("NextViT_small_224", "NextViT_small_384", "ViT_base_patch16_224", "ViT_base_patch16_384")


def paddleclas_config(name: str) -> list[dict]:
    """PaddleClas's transforms for a catalog model (`_ssld` weights have no config: their base model's)."""
    transforms, resize, crop = PADDLECLAS_CONFIGS[name.removesuffix("_ssld")]
    text = transforms.replace("RESIZE", str(resize)).replace("CROP", str(crop))
    return yaml.safe_load(text)
