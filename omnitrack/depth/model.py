"""Depth Anything V2: a DINOv2 ViT backbone and a DPT head, with the official release's parameter names.

The network (Yang et al., "Depth Anything V2", 2024) is written here from its description; its
module tree is laid out so that ``state_dict()`` has exactly the keys of the released files
(``depth_anything_v2_{vits,vitb,vitl}.pth``), and those load with a strict ``load_state_dict``,
no key remapping:

- ``pretrained.*``: DINOv2 ViT/14 without registers. timm's ``vit_{small,base,large}_patch14_dinov2``
  has the official DINOv2 parameter names verbatim (``cls_token``, ``pos_embed``,
  ``patch_embed.proj``, ``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}``,
  ``norm``); the official backbone also stores an unused ``mask_token`` [1, C], which we add as a
  parameter so the file loads strictly. The patch tokens are taken after blocks ``LAYERS[encoder]``
  (0-based), each through the final LayerNorm, class token dropped (DINOv2's
  ``get_intermediate_layers(..., return_class_token=True)`` whose class token the head ignores).
  The position embedding (native 37x37 grid) is resampled with DINOv2's own rule (bicubic,
  ``scale_factor = (grid + 0.1) / 37``, no antialiasing; untouched on the native square grid), which
  is not timm's: see :func:`omnitrack.features.dino.interpolate_pos_embed`.
- ``depth_head.*``: the DPT head. Per tapped layer k: ``projects[k]`` (1x1 conv to
  ``out_channels[k]``), ``resize_layers[k]`` (4x transposed conv, 2x transposed conv, identity,
  3x3 stride-2 conv: strides 4, 8, 16, 32 of the patch grid), ``scratch.layer{k+1}_rn`` (3x3 conv
  to ``features``, no bias); then the fusion chain ``scratch.refinenet4 .. refinenet1`` (each: add
  ``resConfUnit1(skip)`` to the coarser path, ``resConfUnit2``, bilinear (align_corners=True) upsample
  to the next finer level's size (x2 for the last), 1x1 ``out_conv``); ``scratch.output_conv1`` (3x3
  to features/2), bilinear resize to the network input size (patch grid x 14, align_corners=True),
  ``scratch.output_conv2`` = 3x3 conv to 32, ReLU, 1x1 conv to 1, ReLU. A residual conv unit is
  ReLU, 3x3 conv, ReLU, 3x3 conv, plus its input (no batch norm in the released models).

Output: relative inverse depth (larger = nearer), [B, H', W'] at the network input size, >= 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PATCH = 14


@dataclass(frozen=True)
class EncoderConfig:
    timm_name: str
    embed_dim: int
    features: int
    out_channels: tuple[int, int, int, int]
    layers: tuple[int, int, int, int]


CONFIGS = {
    "vits": EncoderConfig("vit_small_patch14_dinov2", 384, 64, (48, 96, 192, 384), (2, 5, 8, 11)),
    "vitb": EncoderConfig("vit_base_patch14_dinov2", 768, 128, (96, 192, 384, 768), (2, 5, 8, 11)),
    "vitl": EncoderConfig("vit_large_patch14_dinov2", 1024, 256, (256, 512, 1024, 1024), (4, 11, 17, 23)),
}


def build_backbone(encoder: str) -> nn.Module:
    """timm's DINOv2 ViT of ``encoder`` (no classifier), plus the official unused ``mask_token``."""
    import timm

    cfg = CONFIGS[encoder]
    vit = timm.create_model(cfg.timm_name, pretrained=False, num_classes=0, dynamic_img_size=True)
    vit.mask_token = nn.Parameter(torch.zeros(1, cfg.embed_dim))
    return vit


def intermediate_tokens(vit: nn.Module, image: torch.Tensor, layers) -> list[torch.Tensor]:
    """Normalised patch tokens after each block in ``layers``: image [B, 3, H, W] -> [B, h * w, C] each."""
    from omnitrack.features.dino import interpolate_pos_embed

    x = vit.patch_embed(image)  # [B, h, w, C] (dynamic image size: NHWC)
    b, h, w, c = x.shape
    x = torch.cat([vit.cls_token.expand(b, -1, -1), x.reshape(b, h * w, c)], dim=1)
    x = x + interpolate_pos_embed(vit.pos_embed, h, w)
    out, wanted, last = [], set(layers), max(layers)
    for i, block in enumerate(vit.blocks):
        x = block(x)
        if i in wanted:
            out.append(vit.norm(x)[:, 1:])
        if i == last:
            break
    return out


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x):
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class FusionBlock(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, path, skip=None, size=None):
        if skip is not None:
            path = path + self.resConfUnit1(skip)
        path = self.resConfUnit2(path)
        if size is None:
            path = F.interpolate(path, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            path = F.interpolate(path, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(path)


class DPTHead(nn.Module):
    def __init__(self, embed_dim: int, features: int, out_channels):
        super().__init__()
        c = list(out_channels)
        self.projects = nn.ModuleList([nn.Conv2d(embed_dim, k, 1) for k in c])
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(c[0], c[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(c[1], c[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(c[3], c[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        s = nn.Module()
        for k in range(4):
            setattr(s, f"layer{k + 1}_rn", nn.Conv2d(c[k], features, 3, padding=1, bias=False))
            setattr(s, f"refinenet{k + 1}", FusionBlock(features))
        s.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        s.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 1, 1), nn.ReLU()
        )
        self.scratch = s

    def forward(self, tokens: list[torch.Tensor], grid_h: int, grid_w: int) -> torch.Tensor:
        s = self.scratch
        levels = []
        for k, x in enumerate(tokens):
            x = x.permute(0, 2, 1).reshape(x.shape[0], x.shape[-1], grid_h, grid_w)
            x = self.resize_layers[k](self.projects[k](x))
            levels.append(getattr(s, f"layer{k + 1}_rn")(x))
        l1, l2, l3, l4 = levels
        path = s.refinenet4(l4, size=l3.shape[2:])
        path = s.refinenet3(path, l3, size=l2.shape[2:])
        path = s.refinenet2(path, l2, size=l1.shape[2:])
        path = s.refinenet1(path, l1)
        out = s.output_conv1(path)
        out = F.interpolate(out, size=(grid_h * PATCH, grid_w * PATCH), mode="bilinear", align_corners=True)
        return s.output_conv2(out)


class DepthAnythingV2(nn.Module):
    """image [B, 3, H, W] (ImageNet-normalised, H and W multiples of 14) -> relative inverse depth [B, H, W]."""

    def __init__(self, encoder: str = "vits"):
        super().__init__()
        if encoder not in CONFIGS:
            raise ValueError(f"Depth Anything V2 encoder must be one of {sorted(CONFIGS)}, got {encoder!r}")
        cfg = CONFIGS[encoder]
        self.encoder = encoder
        self.layers = cfg.layers
        self.pretrained = build_backbone(encoder)
        self.depth_head = DPTHead(cfg.embed_dim, cfg.features, cfg.out_channels)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        grid_h, grid_w = image.shape[-2] // PATCH, image.shape[-1] // PATCH
        tokens = intermediate_tokens(self.pretrained, image, self.layers)
        return self.depth_head(tokens, grid_h, grid_w)[:, 0]
