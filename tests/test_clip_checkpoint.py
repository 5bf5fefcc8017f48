"""CLIP weights from local files in the formats users have: a random ViT-B/16 written as OpenAI's
TorchScript archive, as a torch.save'd open_clip state dict and as .safetensors loads back with image
embeddings identical to the model it was written from; a file of another architecture, a truncated file
and an activation that disagrees with the weights fail with the file named."""

import warnings
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU
from safetensors.torch import save_file
from torch import nn

from dcpclip.model.backbone import ClipBackbone, build_backbone
from dcpclip.model.clip_checkpoint import CheckpointError
from dcpclip.model.config import BackboneConfig

BLOCKS = (3, 7)


class OpenAIArchive(nn.Module):
    """Laid out as OpenAI's released archives: the CLIP's modules and parameters at the top level (OpenAI's
    key names), fp16, plus three integer entries that are not weights."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        for name, child in clip.named_children():
            self.add_module(name, child)
        for name, parameter in clip.named_parameters(recurse=False):
            self.register_parameter(name, parameter)
        for name, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
            self.register_buffer(name, torch.tensor(value))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[nn.Module, dict[str, Path]]:
    """A random QuickGELU ViT-B/16 whose weights are exact in fp16 (as OpenAI's are), and its three files."""
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True).eval()
    with torch.no_grad():
        for parameter in clip.parameters():
            parameter.copy_(parameter.half().float())
    folder = tmp_path_factory.mktemp("clip")
    files = {"openai": folder / "ViT-B-16.pt", "state_dict": folder / "open_clip_model.bin",
             "safetensors": folder / "open_clip_model.safetensors"}
    archive = OpenAIArchive(open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True))
    archive.load_state_dict({**clip.state_dict(), **dict(archive.named_buffers())})
    archive = archive.half().eval()
    with warnings.catch_warnings():  # tracing is deprecated and chatty, and what OpenAI's files are made of
        warnings.simplefilter("ignore")
        torch.jit.trace(archive, torch.randn(1, 3, 224, 224).half(), check_trace=False).save(str(files["openai"]))
    torch.save({"state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}}, files["state_dict"])
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, files["safetensors"])
    return clip, files


def vitb16(pretrained: str | None, quick_gelu: bool = True, arch: str = "ViT-B-16") -> BackboneConfig:
    return BackboneConfig(arch=arch, pretrained=pretrained, quick_gelu=quick_gelu, image_size=384,
                          intermediate_blocks=BLOCKS)


@pytest.mark.parametrize("kind", ["openai", "state_dict", "safetensors"])
def test_each_format_loads_and_embeds_exactly_as_the_model_it_was_written_from(source, kind):
    clip, files = source
    loaded = build_backbone(vitb16(str(files[kind]))).eval()
    assert all(isinstance(block.mlp.gelu, QuickGELU) for block in loaded.clip.visual.transformer.resblocks)
    images = torch.randn(2, 3, 384, 384)  # the paper's crop: positional embedding resized from 14x14 to 24x24
    with torch.no_grad():
        expected, got = ClipBackbone(clip, BLOCKS).encode_image(images), loaded.encode_image(images)
    assert torch.equal(got.global_embedding, expected.global_embedding)
    assert torch.equal(got.dense, expected.dense)
    assert all(torch.equal(a, b) for a, b in zip(got.intermediates, expected.intermediates, strict=True))


def test_an_openai_archive_with_gelu_configured_is_refused(source):
    with pytest.raises(CheckpointError, match=r"ViT-B-16\.pt is an OpenAI TorchScript archive.*quick_gelu=true"):
        build_backbone(vitb16(str(source[1]["openai"]), quick_gelu=False))


def test_a_checkpoint_of_another_architecture_is_refused_naming_both(source):
    with pytest.raises(CheckpointError, match=r"open_clip_model\.bin does not fit backbone\.arch=dcpclip-tiny: "
                                              r"it holds a ViT with patch 16, width 768, 12 blocks"):
        build_backbone(BackboneConfig(pretrained=str(source[1]["state_dict"])))


@pytest.mark.parametrize("kind", ["openai", "state_dict", "safetensors"])
def test_a_truncated_file_is_refused_naming_it(source, kind, tmp_path):
    whole = source[1][kind]
    truncated = tmp_path / whole.name
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=rf"{truncated.name} \(\d+ bytes\) could not be read"):
        build_backbone(vitb16(str(truncated)))


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match=r"weights\.pt holds a list, not a state dict"):
        build_backbone(vitb16(str(path)))


def test_a_tag_trained_with_another_activation_is_refused_before_any_download():
    with pytest.raises(ValueError, match=r"ViT-B-16/openai was trained with QuickGELU: set backbone.quick_gelu=true"):
        build_backbone(vitb16("openai", quick_gelu=False))
