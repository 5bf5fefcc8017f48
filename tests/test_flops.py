import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import FlopCountAnalysis
from torch import nn

from dcpclip import flop_records, flops
from dcpclip.data.specs import SPECS
from dcpclip.flops import (
    MATMUL_OPERATORS,
    SegmenterLogits,
    count_gmacs,
    flop_counter_macs,
    fvcore_count,
    random_text_bank,
)
from dcpclip.model.backbone import build_backbone
from dcpclip.model.build import build_model, run_model
from dcpclip.model.config import BackboneConfig
from dcpclip.model.trainable import packed_projections, set_trainable
from dcpclip.model.variants import VARIANTS, variant_head
from experiments import fetch, prepare
from experiments.compose import compose_config
from experiments.flops import paper_arch_config

# fvcore multiply-adds per image (64x64, one view) for C = 20 / 171 / 847, parameters total / trainable.
# Computed once with dcpclip.flops.count_gmacs; any change to the architecture must update them knowingly.
PINNED = {
    "full": ({20: 30386856, 171: 31015318, 847: 33828830}, 3546471, 104358),
    "no_prune": ({20: 49950720, 171: 297228320, 847: 1404245920}, 3546468, 104355),
    "no_dual": ({20: 30319016, 171: 30947478, 847: 33760990}, 3542310, 100197),
    "static_text": ({20: 30000808, 171: 30629270, 847: 33442782}, 3533543, 91430),
    "zero_shot": ({20: 16608896, 171: 19701376, 847: 33545856}, 3492033, 0),
}


@pytest.fixture(scope="module")
def tiny():
    cfg = compose_config(["model=tiny", "pretrain=none"])
    return cfg.backbone, cfg.head


def tiny_model(tiny, variant):
    backbone_cfg, head_cfg = tiny
    head = variant_head(head_cfg, variant)
    model = build_model(backbone_cfg, head)
    set_trainable(model, head)
    return model


def bank(num_classes, dim=64):
    return F.normalize(torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(0)), dim=-1)


class ImageTower(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, images):
        return self.backbone.encode_image(images).dense


def test_registry_is_pinned():
    assert set(PINNED) == set(VARIANTS)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tiny_model_gmacs_and_parameters_are_pinned(tiny, variant):
    model = tiny_model(tiny, variant).eval()
    macs, params_total, params_trainable = PINNED[variant]
    images = torch.randn(1, 3, 64, 64)
    for num_classes in (20, 847):
        assert fvcore_count(SegmenterLogits(model), (images, bank(num_classes))).macs == macs[num_classes]
    count = count_gmacs(model, images, bank(171))
    assert round(count.gmacs * 1e9) == macs[171]
    assert count.num_classes == 171 and count.resolution == (64, 64) and count.views == 1
    assert not count.text_encoder_included and count.text_encoder_gmacs == 0
    assert count.costly_skipped_ops == []  # every skipped operator is elementwise or data movement
    # FlopCounterMode (2 per multiply-add) sees the same multiply-add work
    assert count.matmul_gmacs == pytest.approx(count.flop_counter_gmacs, rel=0.02)
    # fvcore's extra: per-element cost of norms, interpolation and pooling only
    extra = {"layer_norm", "group_norm", "upsample_bilinear2d", "adaptive_avg_pool2d"}
    assert set(count.by_operator) - MATMUL_OPERATORS <= extra
    assert (count.params_total, count.params_trainable) == (params_total, params_trainable)
    assert params_total == sum(p.numel() for p in model.parameters())


def test_einsum_is_counted_exactly():
    # fvcore's own einsum handle rounds to four significant digits (numpy's einsum_path report)
    class Contraction(nn.Module):
        def forward(self, text, visual):
            return torch.einsum("bkd,bdn->bkn", text, visual)

    count = fvcore_count(Contraction(), (torch.randn(3, 7, 11), torch.randn(3, 11, 101)))
    assert count.macs == 3 * 7 * 11 * 101  # fvcore alone: 23330


def test_trainable_count_excludes_the_frozen_key_rows(tiny):
    model = tiny_model(tiny, "full")
    head = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("backbone."))
    qv = sum(2 * p.numel() // 3 for p in packed_projections(model.backbone))
    assert count_gmacs(model, torch.randn(1, 3, 64, 64), bank(20)).params_trainable == head + qv


def test_attention_is_counted_exactly(tiny):
    backbone_cfg, head_cfg = tiny
    model = tiny_model(tiny, "full").eval()
    tokens = (backbone_cfg.image_size // model.backbone.patch_size) ** 2  # 64 patches
    width, depth, kept = model.backbone.vision_width, model.backbone.depth, head_cfg.top_k
    image_tower = depth * (tokens + 1) ** 2 * 2 * width  # QK^T and AV over heads * head_dim = width
    dynamic_text = head_cfg.dynamic_text_layers * kept * tokens * 2 * head_cfg.hidden_dim
    text_to_vision = head_cfg.text_to_vision_layers * tokens * kept * 2 * head_cfg.hidden_dim
    inputs = (torch.randn(1, 3, 64, 64), bank(171))
    counted = fvcore_count(SegmenterLogits(model), inputs)
    missing = fvcore_count(SegmenterLogits(model), inputs, count_attention=False)
    assert counted.macs - missing.macs == image_tower + dynamic_text + text_to_vision
    assert "aten::scaled_dot_product_attention" in missing.skipped
    assert "aten::scaled_dot_product_attention" not in counted.skipped


@torch.no_grad()
def test_multihead_attention_fast_path_would_hide_whole_blocks(tiny_backbone):
    # The reason counting turns the fast path off: fvcore sees one fused op per block, projections and all.
    tower = ImageTower(tiny_backbone).eval()
    images = torch.randn(1, 3, 64, 64)
    analysis = FlopCountAnalysis(tower, images)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.total()
    assert analysis.unsupported_ops()["aten::_native_multi_head_attention"] == tiny_backbone.depth
    honest = fvcore_count(tower, (images,))
    assert "aten::_native_multi_head_attention" not in honest.skipped
    assert honest.macs > analysis.total()


def test_views_and_text_encoder_add_up(tiny):
    model = tiny_model(tiny, "full")
    one = count_gmacs(model, torch.randn(1, 3, 64, 64), bank(20))
    five = count_gmacs(model, torch.randn(5, 3, 64, 64), bank(20))
    assert five.views == 5 and five.gmacs == pytest.approx(5 * one.gmacs, rel=1e-9)
    prompts = torch.randint(1, 1000, (20, 9))
    with_text = count_gmacs(model, torch.randn(1, 3, 64, 64), bank(20), text_tokens=prompts)
    assert with_text.text_encoder_included and with_text.text_encoder_gmacs > 0
    assert with_text.gmacs == pytest.approx(one.gmacs + with_text.text_encoder_gmacs, rel=1e-9)
    assert with_text.matmul_gmacs == pytest.approx(with_text.flop_counter_gmacs, rel=0.02)


@pytest.mark.slow
def test_vitb16_image_tower_at_224_matches_the_known_cost():
    backbone = build_backbone(BackboneConfig(arch="ViT-B-16", image_size=224, intermediate_blocks=(3, 7)))
    images = torch.randn(1, 3, 224, 224)

    class OpenClipImageTower(nn.Module):  # open_clip's own encode_image: the pooled embedding
        def __init__(self):
            super().__init__()
            self.clip = backbone.clip

        def forward(self, x):
            return self.clip.encode_image(x)

    tower = OpenClipImageTower().eval()
    count = fvcore_count(tower, (images,))
    assert count.macs / 1e9 == pytest.approx(17.58, abs=0.01)  # the known ViT-B/16 cost at 224
    assert count.by_operator["scaled_dot_product_attention"] == 12 * 197**2 * 2 * 768  # 12 blocks, 197 tokens
    matmul = sum(v for k, v in count.by_operator.items() if k in MATMUL_OPERATORS)
    assert matmul == pytest.approx(flop_counter_macs(tower, (images,)), rel=0.02)
    # our adapter adds the dense projection of the 196 patch tokens to the joint space (768 -> 512)
    dense = fvcore_count(ImageTower(backbone).eval(), (images,))
    assert dense.macs - count.macs == pytest.approx(196 * 768 * 512, rel=0.01)


def test_head_config_is_untouched_by_counting(tiny):
    model = tiny_model(tiny, "full").train()
    count_gmacs(model, torch.randn(1, 3, 64, 64), bank(20))
    assert model.training  # restored after counting in eval mode
    assert dataclasses.is_dataclass(tiny[1])


def counts_at(precision_is_bfloat16: bool, monkeypatch, model, views, text_bank, tokens, cross_check=True):
    monkeypatch.setattr(flops, "native_bfloat16_cpu", lambda: precision_is_bfloat16)
    assert isinstance(flops.counting_precision(), torch.autocast) == precision_is_bfloat16
    return count_gmacs(model, views, text_bank, text_tokens=tokens, cross_check=cross_check)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_counting_under_bfloat16_autocast_gives_the_float32_count_exactly(tiny, variant, monkeypatch):
    model = tiny_model(tiny, variant)
    views, prompts = torch.randn(2, 3, 64, 64), torch.randint(1, 1000, (20, 9))
    for num_classes in (20, 847):
        exact = counts_at(False, monkeypatch, model, views, bank(num_classes), prompts)
        assert counts_at(True, monkeypatch, model, views, bank(num_classes), prompts) == exact, (variant, num_classes)


@pytest.mark.slow
def test_counting_under_bfloat16_autocast_gives_the_float32_count_at_the_paper_geometry(monkeypatch):
    cfg = paper_arch_config(compose_config(["variant=full"]), "vitb16")  # ViT-B/16, 384 windows, K = 32
    model = run_model(cfg.backbone, cfg.head, cfg.seed)
    views, text_bank = torch.randn(1, 3, 384, 384), random_text_bank(847, model.backbone.embed_dim)
    exact = counts_at(False, monkeypatch, model, views, text_bank, None, cross_check=False)
    assert exact.kept_classes == 32 and exact.num_classes == 847
    assert counts_at(True, monkeypatch, model, views, text_bank, None, cross_check=False) == exact


def test_benchmarks_sharing_a_vocabulary_size_and_view_shape_are_counted_once(monkeypatch, tmp_path):
    overrides = [f"data.raw_root={tmp_path}/raw",
                 f"data.root={tmp_path}/prepared", f"results_dir={tmp_path}/results",
                 "data.benchmarks=[pc59,pas20b]",
                 "eval.max_images=1", "eval.flops_images=1", "pretrain=none", "count_paper_arch=null"]
    for stage in (fetch, prepare):
        assert stage.main([*overrides, "--datasets", "pc59", "pas20b"]) == 0
    cfg = compose_config(overrides)
    assert SPECS["pc59"].num_prompts == SPECS["pas20b"].num_prompts == 59
    traced = []  # the vocabulary size of each traced count

    def counting(model, views, text_bank, **options):
        traced.append(text_bank.shape[0])
        return count_gmacs(model, views, text_bank, **options)

    monkeypatch.setattr(flop_records, "count_gmacs", counting)
    outcome = flop_records.count_records(cfg, cfg.profile, lambda _, key: tmp_path / f"{key}.json", "test")
    assert outcome["pc59"] == outcome["pas20b"] and traced.count(59) == 1
    pc59, pas20b = (json.loads((tmp_path / f"{key}.json").read_text()) for key in ("pc59", "pas20b"))
    assert (pc59["gmacs_mean"], pc59["num_classes"]) == (pas20b["gmacs_mean"], pas20b["num_classes"])
