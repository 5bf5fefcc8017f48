"""Adapter around an open_clip CLIP model: global, dense and intermediate image features, and text
embeddings with a context cut to the longest prompt.

Never a vendored CLIP: the image path runs open_clip's own modules (patch embedding, its transformer's
`forward_intermediates`, its pooling); the only addition is bicubic interpolation of the positional
embedding so any input whose sides are multiples of the patch size works (as CAT-Seg does for 384 inputs
on 224-trained weights). Dense embeddings are the patch tokens through the final norm and projection,
i.e. the same path as the pooled class token (CAT-Seg, SED).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.pretrained import get_pretrained_cfg
from open_clip.transformer import VisionTransformer, text_global_pool
from torch import nn

from dcpclip.errors import ExpectedError
from dcpclip.model.clip_checkpoint import load_clip_checkpoint
from dcpclip.model.config import BackboneConfig

ARCH_CONFIG_DIR = Path(__file__).parent / "arch_configs"
open_clip.add_model_config(ARCH_CONFIG_DIR)  # registers "dcpclip-tiny" (registry name = file stem)


@dataclasses.dataclass
class ImageFeatures:
    global_embedding: torch.Tensor  # [B, D] pooled image embedding (not normalised)
    dense: torch.Tensor  # [B, D, h, w] patch embeddings in the joint space (not normalised)
    intermediates: list[torch.Tensor]  # each [B, W, h, w], raw tokens of the configured blocks


class PretrainedWeightsUnavailable(ExpectedError, RuntimeError):
    """The configured CLIP weights cannot be downloaded or found; the message says where to put them."""


class ClipBackbone(nn.Module):
    """Wraps a built open_clip `CLIP`; constructor does no I/O (see `build_backbone`)."""

    def __init__(self, clip: nn.Module, intermediate_blocks: tuple[int, ...]):
        super().__init__()
        visual = clip.visual
        if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None:
            raise ValueError("ClipBackbone needs an open_clip ViT image tower without attentional pooling")
        depth = len(visual.transformer.resblocks)
        bad = [b for b in intermediate_blocks if not 0 <= b < depth - 1]
        if bad:
            raise ValueError(
                f"backbone.intermediate_blocks {list(intermediate_blocks)}: block(s) {bad} out of range; "
                f"this image tower has {depth} blocks, so use indices 0..{depth - 2}"
            )
        self.clip = clip
        self.intermediate_blocks = tuple(intermediate_blocks)
        self.patch_size = visual.patch_size[0]
        self.embed_dim = visual.output_dim
        self.vision_width = visual.conv1.out_channels
        self.native_grid = visual.grid_size  # (gh, gw) of the stored positional embedding
        self.depth = depth

    # ---- image side -------------------------------------------------------------------------------
    def positional_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """[1 + gh*gw, W]: class position plus the patch grid resized bicubically to `grid`."""
        pos = self.clip.visual.positional_embedding
        if tuple(grid) == tuple(self.native_grid):
            return pos
        cls_pos, patch_pos = pos[:1], pos[1:]
        gh, gw = self.native_grid
        patch_pos = patch_pos.reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=grid, mode="bicubic", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)
        return torch.cat([cls_pos, patch_pos], dim=0)

    def encode_image(self, images: torch.Tensor) -> ImageFeatures:
        """images [B, 3, H, W] (CLIP-normalised, H and W multiples of the patch size)."""
        batch, _, height, width = images.shape
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {self.patch_size}")
        grid = (height // self.patch_size, width // self.patch_size)
        visual = self.clip.visual
        x = visual.conv1(images)  # [B, W, h, w]
        x = x.flatten(2).transpose(1, 2)  # [B, h*w, W]
        cls = visual.class_embedding.to(x.dtype).expand(batch, 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding(grid).to(x.dtype)  # [B, 1+h*w, W]
        x = visual.ln_pre(visual.patch_dropout(x))
        last = self.depth - 1
        x, taken = visual.transformer.forward_intermediates(x, indices=[*self.intermediate_blocks, last])
        pooled, tokens = visual._pool(x)  # open_clip's own final norm + pooling; tokens [B, h*w, W]
        global_embedding = pooled @ visual.proj  # [B, D]
        dense = (tokens @ visual.proj).transpose(1, 2).reshape(batch, -1, *grid)  # [B, D, h, w]
        intermediates = [t[:, 1:].transpose(1, 2).reshape(batch, -1, *grid) for t in taken[:-1]]
        return ImageFeatures(global_embedding, dense, intermediates)

    # ---- text side --------------------------------------------------------------------------------
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [N, L] with L <= context length (any cut that keeps each prompt's end-of-text token)
        -> [N, D] unnormalised embeddings. CLIP's text tower is causal and pools at the end-of-text token,
        so cutting the padding after the longest prompt gives the same embeddings, far faster."""
        clip = self.clip
        length = tokens.shape[1]
        cast_dtype = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(tokens).to(cast_dtype)  # [N, L, Wt]
        x = x + clip.positional_embedding[:length].to(cast_dtype)
        x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
        x = clip.ln_final(x)
        x = text_global_pool(x, tokens, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
        return x @ clip.text_projection  # [N, D]

    def text_parameters(self) -> list[nn.Parameter]:
        clip = self.clip
        mods = [clip.token_embedding, clip.transformer, clip.ln_final]
        return [clip.positional_embedding, clip.text_projection, *(p for m in mods for p in m.parameters())]


@contextlib.contextmanager
def _random_init_notice_muted() -> Iterator[None]:
    """open_clip logs "No pretrained weights loaded ... initialized randomly" (a root-logger warning) for
    every `pretrained=None` model, also when a checkpoint is loaded into it right after and when random
    weights are what `backbone.pretrained: null` asks for: in a fan-out that is one misleading line per
    trial. Drop that one record while the model is created."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded for model")

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def build_backbone(cfg: BackboneConfig) -> ClipBackbone:
    """Create the open_clip model (random init, tag, or local checkpoint) and wrap it."""
    pretrained = cfg.pretrained
    if pretrained is None:
        with torch.random.fork_rng(), _random_init_notice_muted():
            torch.manual_seed(cfg.init_seed)
            clip = open_clip.create_model(cfg.arch, pretrained=None, force_quick_gelu=cfg.quick_gelu)
    elif os.path.sep in pretrained or Path(pretrained).suffix in {".pt", ".pth", ".bin", ".safetensors"}:
        if not Path(pretrained).is_file():
            raise FileNotFoundError(
                f"backbone.pretrained: checkpoint file {pretrained} does not exist (a CLIP pre-trained here, as in "
                "the offline profile, is made by `python -m experiments.pretrain` with the same overrides)"
            )
        with _random_init_notice_muted():
            clip = open_clip.create_model(cfg.arch, pretrained=None, force_quick_gelu=cfg.quick_gelu)
        load_clip_checkpoint(clip, Path(pretrained), cfg.arch, cfg.quick_gelu)
    else:
        known = open_clip.list_pretrained_tags_by_model(cfg.arch)
        if pretrained not in known:
            raise ValueError(
                f"backbone.pretrained: {pretrained!r} is not an open_clip tag for {cfg.arch} "
                f"(known: {', '.join(known) or 'none'}); or pass a local checkpoint path"
            )
        trained_with = bool(get_pretrained_cfg(cfg.arch, pretrained).get("quick_gelu", False))
        if trained_with != cfg.quick_gelu:  # open_clip only warns, and the embeddings come out wrong
            raise ValueError(
                f"backbone.quick_gelu={str(cfg.quick_gelu).lower()}, but {cfg.arch}/{pretrained} was trained with "
                f"{'QuickGELU' if trained_with else 'GELU'}: set backbone.quick_gelu={str(trained_with).lower()}"
            )
        how = (
            f"Without network access, download the checkpoint elsewhere and pass its path: "
            f"backbone.pretrained=/path/to/{cfg.arch}-{pretrained}.pt"
        )
        if not _hub_reachable():  # fail in seconds instead of after the hub client's minute of retries
            raise PretrainedWeightsUnavailable(f"{cfg.arch}/{pretrained}: {HUB_HOST} is unreachable. {how}")
        try:
            clip = open_clip.create_model(cfg.arch, pretrained=pretrained, require_pretrained=True,
                                          force_quick_gelu=cfg.quick_gelu)
        except Exception as err:  # network errors come in many types from hf_hub / urllib
            raise PretrainedWeightsUnavailable(
                f"could not load open_clip weights {cfg.arch}/{pretrained} ({type(err).__name__}: {err}). {how}"
            ) from err
    return ClipBackbone(clip, cfg.intermediate_blocks)


HUB_HOST = "huggingface.co"


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """True when the weights host answers, or when a proxy is configured (then let the client try)."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HF_ENDPOINT")):
        return True
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True
