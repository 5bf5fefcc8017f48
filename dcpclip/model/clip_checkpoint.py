"""CLIP weights from a local file, in the formats users have, into a built open_clip model.

- OpenAI's released TorchScript archive (what open_clip's `openai` tag downloads, e.g. `ViT-B-16.pt`):
  fp16 weights under OpenAI's key names, plus three integer entries (input_resolution, context_length,
  vocab_size) that are not weights. OpenAI's models use QuickGELU, so the config must say so.
- A state dict saved with `torch.save` (`.pt`, `.pth`, `.bin`; open_clip's and OpenAI's key names are the
  same for the standard CLIP), optionally under a "state_dict" key and with DDP's "module." prefix, or a
  `.safetensors` file (the form open_clip's hub copies come in).

Anything else (another architecture, a truncated download, a file of another kind) is a `CheckpointError`
naming the file and what was wrong, before any weight is copied.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from dcpclip.errors import ExpectedError

OPENAI_ARCHIVE_EXTRAS = ("input_resolution", "context_length", "vocab_size")


class CheckpointError(ExpectedError, ValueError):
    """A CLIP weights file that is not a ViT checkpoint of the configured architecture; names the file."""


def is_torchscript_archive(path: Path) -> bool:
    """A TorchScript archive is a zip holding compiled code; `torch.save`'s zip holds only data.pkl."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 2)[1:2] == ["code"] for name in archive.namelist())


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """(the weights of `path` on the CPU, whether it is an OpenAI TorchScript archive)."""
    if not path.is_file():
        raise CheckpointError(f"CLIP checkpoint {path} does not exist")
    size = path.stat().st_size
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path, device="cpu"), False
        if is_torchscript_archive(path):
            with warnings.catch_warnings():  # "torch.jit.load is deprecated": it is how OpenAI's files load
                warnings.simplefilter("ignore", FutureWarning)
                state = torch.jit.load(path, map_location="cpu").state_dict()
            return {k: v for k, v in state.items() if k not in OPENAI_ARCHIVE_EXTRAS}, True
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch, zipfile and safetensors each raise their own types for a bad file
        raise CheckpointError(
            f"CLIP checkpoint {path} ({size} bytes) could not be read ({type(err).__name__}: {err}); a truncated "
            "download or not a checkpoint? Expected OpenAI's TorchScript archive, a torch.save'd state dict or "
            "a .safetensors file"
        ) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"CLIP checkpoint {path} holds a {type(state).__name__}, not a state dict of tensors")
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state, False


def describe_vit(state: dict[str, torch.Tensor]) -> str:
    """'ViT with patch 16, width 768, 12 blocks, embedding 512' from the image tower's weights."""
    conv = state.get("visual.conv1.weight")
    if conv is None:
        return "no ViT image tower (no visual.conv1.weight)"
    blocks = {k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")}
    proj = state.get("visual.proj")
    embedding = f", embedding {proj.shape[1]}" if proj is not None else ""
    return f"ViT with patch {conv.shape[-1]}, width {conv.shape[0]}, {len(blocks)} blocks{embedding}"


def load_clip_checkpoint(clip: nn.Module, path: Path, arch: str, quick_gelu: bool) -> None:
    """Copy the weights of `path` into `clip` (built as open_clip's `arch`), every one or none."""
    state, openai_archive = read_state_dict(path)
    if openai_archive and not quick_gelu:
        raise CheckpointError(
            f"CLIP checkpoint {path} is an OpenAI TorchScript archive; OpenAI's CLIPs use QuickGELU, so set "
            "backbone.quick_gelu=true (with GELU the embeddings are silently wrong)"
        )
    expected = clip.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k} {list(state[k].shape)} (the model's is {list(v.shape)})"
                for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or reshaped:
        found = "; ".join(part for part in (
            f"missing {len(missing)} (e.g. {', '.join(missing[:3])})" if missing else "",
            f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})" if unexpected else "",
            f"other shapes: {', '.join(reshaped[:3])}" if reshaped else "") if part)
        raise CheckpointError(
            f"CLIP checkpoint {path} does not fit backbone.arch={arch}: it holds a {describe_vit(state)}, the "
            f"model is a {describe_vit(expected)}; {found}"
        )
    clip.load_state_dict(state, strict=True)  # copies, casting OpenAI's fp16 to the model's dtype
