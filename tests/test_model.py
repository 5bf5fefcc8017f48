import dataclasses

import open_clip
import pytest
import torch
import torch.nn.functional as F

from dcpclip.engine.config import TrainConfig
from dcpclip.engine.optim import build_optimizer
from dcpclip.model.build import build_model
from dcpclip.model.config import TextConfig
from dcpclip.model.dynamic_text import DynamicText, StaticText
from dcpclip.model.losses import segmentation_losses
from dcpclip.model.pruning import CategoryPruner, KeepAll
from dcpclip.model.rescoring import MaskPooledRescorer, NoRescoring
from dcpclip.model.text_bank import encode_vocabulary
from dcpclip.model.trainable import packed_projections, set_trainable, trainable_parameters
from dcpclip.model.variants import VARIANTS, variant_head
from dcpclip.model.zero_shot import DenseClipSegmenter
from experiments.compose import compose_config

VOCAB_SIZES = (20, 171, 847)
SIZE = 64


@pytest.fixture(scope="module")
def tiny():
    cfg = compose_config(["model=tiny", "pretrain=none"])
    return cfg.backbone, cfg.head


def make(tiny, variant, seed=0, **head_changes):
    backbone_cfg, head_cfg = tiny
    torch.manual_seed(seed)
    return build_model(backbone_cfg, dataclasses.replace(variant_head(head_cfg, variant), **head_changes))


def random_bank(num_classes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(num_classes, 64, generator=generator), dim=-1)  # tiny embed_dim = 64


def random_images(batch=2, seed=0):
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def capture_input(module, index=0):
    """Record the `index`-th positional input (or the output, index=None) of `module` on each call."""
    seen = []

    def hook(mod, args, output):
        seen.append(output if index is None else args[index])

    module.register_forward_hook(hook)
    return seen


@torch.no_grad()
@pytest.mark.parametrize("num_classes", VOCAB_SIZES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_meets_the_output_contract(tiny, variant, num_classes):
    model = make(tiny, variant).eval()
    out = model(random_images(), random_bank(num_classes))
    head = variant_head(tiny[1], variant)
    expected_k = min(head.top_k, num_classes) if head.prune and not head.zero_shot else num_classes
    assert out.logits.shape == (2, num_classes, SIZE, SIZE)
    assert torch.isfinite(out.logits).all()
    assert out.kept.shape == (2, expected_k) and out.kept.dtype == torch.long
    assert (out.kept.diff(dim=1) > 0).all()  # ascending, no repeats
    assert out.kept_logits.shape == (2, expected_k, SIZE // 4, SIZE // 4)
    assert torch.isfinite(out.kept_logits).all()
    if head.prune and not head.zero_shot:
        assert out.presence_logits.shape == (2, num_classes)
    else:
        assert out.presence_logits is None
    assert out.recall is None  # no targets given


def test_build_model_picks_components_from_flags_only(tiny):
    full = make(tiny, "full")
    assert isinstance(full.pruner, CategoryPruner)
    assert isinstance(full.text_features, DynamicText)
    assert isinstance(full.rescorer, MaskPooledRescorer)
    combined = make(tiny, "no_prune+static_text+no_dual")
    assert isinstance(combined.pruner, KeepAll)
    assert isinstance(combined.text_features, StaticText)
    assert isinstance(combined.rescorer, NoRescoring)
    assert isinstance(make(tiny, "zero_shot"), DenseClipSegmenter)
    with pytest.raises(ValueError, match="decoder_dims"):
        make(tiny, "full", decoder_dims=(16, 8, 4))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_backward_reaches_exactly_the_parameters_meant_to_train(tiny, variant):
    model = make(tiny, variant).train()
    head = variant_head(tiny[1], variant)
    set_trainable(model, head)
    names = [f"class {i}" for i in range(20)]
    tokenizer = open_clip.get_tokenizer(tiny[0].arch)
    bank = encode_vocabulary(model.backbone, tokenizer, names, TextConfig())  # differentiable text tower
    targets = torch.randint(0, 20, (2, SIZE, SIZE), generator=torch.Generator().manual_seed(1))
    targets[:, :8] = 255
    loss = segmentation_losses(model(random_images(), bank, targets), targets, head)["total"]
    if head.zero_shot:  # training-free: nothing trains
        assert not any(p.requires_grad for p in model.parameters()) and not loss.requires_grad
        return
    loss.backward()
    packed = {id(p) for p in packed_projections(model.backbone)}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            assert param.grad is None, name
            continue
        assert param.grad is not None and param.grad.abs().sum() > 0, name
        if id(param) in packed:  # q and v rows train, k rows never move
            q, k, v = param.grad.chunk(3, dim=0)
            assert (k == 0).all() and q.abs().sum() > 0 and v.abs().sum() > 0, name
        else:
            assert not name.startswith("backbone."), name  # attn q/v are the only trainable CLIP weights
    trained_clip = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert len(trained_clip) == 2 * (4 + 2)  # in_proj weight and bias of 4 image + 2 text blocks


def test_clip_trainable_choices_replace_each_other(tiny):
    model = make(tiny, "full").train()
    head = tiny[1]
    images, bank = random_images(), random_bank(20)
    targets = torch.randint(0, 20, (2, SIZE, SIZE), generator=torch.Generator().manual_seed(1))
    for choice in ("attn_qv", "all", "none"):
        set_trainable(model, dataclasses.replace(head, clip_trainable=choice))
        model.zero_grad(set_to_none=True)
        segmentation_losses(model(images, bank, targets), targets, head)["total"].backward()
        groups = trainable_parameters(model)
        head_params = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
        assert [id(p) for p in groups["head"]] == [id(p) for p in head_params]
        in_proj = model.backbone.clip.visual.transformer.resblocks[0].attn.in_proj_weight
        if choice == "none":
            assert groups["clip"] == [] and in_proj.grad is None
        elif choice == "all":  # the key-row mask of the previous call is gone
            assert len(groups["clip"]) == len(list(model.backbone.parameters()))
            assert in_proj.grad.chunk(3)[1].abs().sum() > 0
        else:
            assert len(groups["clip"]) == 12 and (in_proj.grad.chunk(3)[1] == 0).all()


def test_adamw_steps_with_weight_decay_leave_the_key_rows_bit_identical(tiny):
    model = make(tiny, "full").train()
    set_trainable(model, tiny[1])
    cfg = TrainConfig(lr=1e-2, weight_decay=0.5, clip_lr_multiplier=1.0)  # decay large enough to show
    optimizer = build_optimizer(model, model.backbone, cfg)
    in_proj = model.backbone.clip.visual.transformer.resblocks[0].attn.in_proj_weight
    before = in_proj.detach().clone()
    targets = torch.randint(0, 20, (2, SIZE, SIZE), generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        segmentation_losses(model(random_images(), random_bank(20), targets), targets, tiny[1])["total"].backward()
        optimizer.step()
    (q0, k0, v0), (q1, k1, v1) = before.chunk(3), in_proj.detach().chunk(3)
    assert torch.equal(k0, k1) and not torch.equal(q0, q1) and not torch.equal(v0, v1)
    unheld = torch.optim.AdamW([torch.nn.Parameter(k0.clone())], lr=1e-2, weight_decay=0.5)  # without the hold:
    unheld.param_groups[0]["params"][0].grad = torch.zeros_like(k0)
    unheld.step()
    assert not torch.equal(unheld.param_groups[0]["params"][0], k0)  # decay alone would have moved them


@torch.no_grad()
@pytest.mark.parametrize("variant,processed", [("full", 8), ("no_prune", 847)])
def test_pruning_bounds_the_classes_processed(tiny, variant, processed):
    model = make(tiny, variant).eval()
    seen_by_decoder = capture_input(model.decoder)  # class_features [B, K, hidden, h, w]
    model(random_images(), random_bank(847))
    assert seen_by_decoder[0].shape[1] == processed


@torch.no_grad()
def test_static_text_features_do_not_depend_on_the_image(tiny):
    bank = random_bank(20)
    for variant, static in [("no_prune+static_text", True), ("no_prune", False)]:
        model = make(tiny, variant).eval()
        features = capture_input(model.text_features, index=None)  # [B, K, D]
        model(random_images(batch=1, seed=1), bank)
        model(random_images(batch=1, seed=2), bank)
        assert torch.equal(features[0], features[1]) == static
        assert torch.equal(features[0][0], bank) == static
    model = make(tiny, "static_text").eval()
    features = capture_input(model.text_features, index=None)
    out = model(random_images(), bank)
    assert torch.equal(features[0], bank[out.kept])  # the fixed embeddings of whichever classes are kept


@torch.no_grad()
def test_no_dual_equals_full_with_the_rescoring_contribution_zeroed(tiny):
    full = make(tiny, "full").eval()
    no_dual = make(tiny, "no_dual", seed=1).eval()
    missing, unexpected = no_dual.load_state_dict(full.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith("rescorer.") for k in unexpected)
    images, bank = random_images(), random_bank(171)
    assert not torch.allclose(full(images, bank).logits, no_dual(images, bank).logits)
    last = full.rescorer.mlp[-1]
    last.weight.zero_()
    last.bias.zero_()
    ours, ablated = full(images, bank), no_dual(images, bank)
    assert torch.equal(ours.kept, ablated.kept)
    torch.testing.assert_close(ours.logits, ablated.logits, rtol=0, atol=0)


@torch.no_grad()
@pytest.mark.parametrize("pruned_logit", [-100.0, 5.0])
def test_a_pruned_class_is_never_predicted(tiny, pruned_logit):
    # 5.0 is above every kept logit of the random head: the floor in scatter_to_vocabulary must still win
    model = make(tiny, "full", pruned_logit=pruned_logit).eval()
    out = model(random_images(), random_bank(171))
    prediction = out.logits.argmax(dim=1)  # [B, H, W]
    for image in range(2):
        assert torch.isin(prediction[image].unique(), out.kept[image]).all()
    assert (out.logits.amax(dim=(2, 3)) == pruned_logit).sum() == 2 * (171 - 8)


@torch.no_grad()
@pytest.mark.parametrize("top_k", [20, 64])
def test_keeping_every_class_equals_no_prune(tiny, top_k):
    full = make(tiny, "full", top_k=top_k).eval()
    no_prune = make(tiny, "no_prune", seed=1).eval()
    missing, unexpected = no_prune.load_state_dict(full.state_dict(), strict=False)
    assert not missing and all(k.startswith("pruner.") for k in unexpected)  # only the calibration differs
    images, bank = random_images(), random_bank(20)
    ours, reference = full(images, bank), no_prune(images, bank)
    assert torch.equal(ours.kept, torch.arange(20).expand(2, 20))
    torch.testing.assert_close(ours.logits, reference.logits, rtol=0, atol=0)
    assert ours.presence_logits is not None and reference.presence_logits is None


@torch.no_grad()
def test_presence_starts_at_the_prior_and_centring_keeps_the_ranking(tiny):
    model = make(tiny, "full", presence_prior=0.05).eval()
    images, bank = random_images(), random_bank(171)
    features = model.backbone.encode_image(images)
    scores = model.pruner.presence_logits(features, bank)  # [B, C]
    image = F.normalize(features.global_embedding, dim=-1) @ bank.T  # [B, C] raw cues
    dense = torch.einsum("cd,bdn->bcn", bank, F.normalize(features.dense.flatten(2), dim=1)).amax(dim=-1)
    raw = image + dense  # both cues weigh the same at init
    # a class of the image's average similarity starts at the prior; the rest shift by scale x distance
    expected = torch.logit(torch.tensor(0.05)) + tiny[1].presence_scale_init * (raw - raw.mean(dim=1, keepdim=True))
    assert torch.allclose(scores, expected, atol=1e-4)
    assert torch.equal(scores.topk(8).indices, raw.topk(8).indices)  # the choice is the raw cues' choice
    with pytest.raises(ValueError, match="presence_prior must be in"):
        make(tiny, "full", presence_prior=1.0)


@torch.no_grad()
def test_presence_is_ranked_in_fp32_under_bf16_autocast(tiny):
    model = make(tiny, "full").eval()
    features, bank = model.backbone.encode_image(random_images()), random_bank(847)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the same autocast as CUDA's, on the CPU
        under_amp = model.pruner.presence_logits(features, bank.bfloat16())
    assert under_amp.dtype == torch.float32
    # bf16 features would tie near-equal classes; fp32 cues on the same inputs rank exactly as without AMP
    assert torch.allclose(under_amp, model.pruner.presence_logits(features, bank.bfloat16().float()), atol=1e-5)


def test_training_forces_every_ground_truth_class_in(tiny):
    model = make(tiny, "full").eval()
    images, bank = random_images(), random_bank(171)
    scores = model(images, bank).presence_logits  # [B, C]
    # label each image with its 12 least likely classes: more than top_k = 8, none in the pruner's choice
    rare = scores.argsort(dim=1)[:, :12]  # [B, 12]
    targets = rare.repeat_interleave(SIZE * SIZE // 12 + 1, dim=1)[:, : SIZE * SIZE].view(2, SIZE, SIZE)
    evaluated = model(images, bank, targets)
    assert evaluated.kept.shape[1] == 8
    assert not torch.isin(rare, evaluated.kept).any()
    assert (evaluated.recall == 0).all()
    trained = model.train()(images, bank, targets)
    assert trained.kept.shape[1] == 12  # K grows to hold every ground-truth class
    for image in range(2):
        assert torch.isin(rare[image], trained.kept[image]).all()
    assert (trained.recall == 0).all()  # recall reports the pruner's own choice, not the forced set


@torch.no_grad()
def test_recall_is_the_share_of_ground_truth_classes_kept(tiny):
    model = make(tiny, "full").eval()
    images, bank = random_images(), random_bank(171)
    kept = model(images, bank).kept
    targets = torch.full((2, SIZE, SIZE), 255)
    targets[0, :10] = kept[0, 0]
    targets[0, 10:20] = kept[0, 1]
    targets[0, 20:30] = next(c for c in range(171) if c not in kept[0])
    out = model(images, bank, targets)  # image 1 has no labelled pixel
    assert out.recall[0].item() == pytest.approx(2 / 3)
    assert out.recall[1].isnan()
    assert make(tiny, "no_prune")(images, bank, targets).recall[0] == 1


def test_bad_inputs_fail_clearly(tiny):
    model = make(tiny, "full").eval()
    with pytest.raises(ValueError, match=r"text_bank must be \[C, 64\]"):
        model(random_images(), torch.randn(20, 32))
    with pytest.raises(ValueError, match="targets must be"):
        model(random_images(), random_bank(20), torch.zeros(2, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="label 20, outside 0..19"):
        model(random_images(), random_bank(20), torch.full((2, SIZE, SIZE), 20))
