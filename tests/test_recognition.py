"""The image-text recognition objective that pre-trains the offline profile's CLIP."""

import math

import pytest
import torch
import torch.nn.functional as F

from dcpclip.model.recognition import (
    MAX_LOGIT_SCALE,
    ClipRecognition,
    RecognitionOutput,
    class_shares,
    recognition_losses,
    soft_cross_entropy,
)

IGNORE = 255


def brute_force_shares(targets, num_classes, grid):
    batch, height, width = targets.shape
    rows, cols = grid
    cell_h, cell_w = height // rows, width // cols
    shares = torch.zeros(batch, num_classes, rows, cols)
    labelled = torch.zeros(batch, rows, cols)
    for b in range(batch):
        for r in range(rows):
            for c in range(cols):
                cell = targets[b, r * cell_h:(r + 1) * cell_h, c * cell_w:(c + 1) * cell_w].flatten().tolist()
                valid = [v for v in cell if v != IGNORE]
                labelled[b, r, c] = len(valid) / len(cell)
                for v in valid:
                    shares[b, v, r, c] += 1 / len(valid)
    return shares, labelled


@pytest.mark.parametrize("grid", [(1, 1), (2, 4), (8, 8)])
def test_class_shares_match_a_per_cell_count(grid):
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 6, (3, 16, 32), generator=generator)
    targets[torch.rand(targets.shape, generator=generator) < 0.3] = IGNORE
    targets[1, :8, :16] = IGNORE  # whole cells without a label
    shares, labelled = class_shares(targets, 6, grid, IGNORE)
    expected_shares, expected_labelled = brute_force_shares(targets, 6, grid)
    assert torch.allclose(shares, expected_shares, atol=1e-6)
    assert torch.allclose(labelled, expected_labelled, atol=1e-6)


def test_class_shares_reject_bad_input():
    with pytest.raises(ValueError, match="does not split into a 3x3 grid"):
        class_shares(torch.zeros(1, 8, 8, dtype=torch.long), 4, (3, 3), IGNORE)
    with pytest.raises(ValueError, match="outside 0..3"):
        class_shares(torch.full((1, 8, 8), 7), 4, (1, 1), IGNORE)


def test_one_hot_shares_give_the_ordinary_cross_entropy():
    logits = torch.randn(5, 7)
    labels = torch.tensor([0, 3, 6, 2, 2])
    keep = torch.ones(5, dtype=torch.bool)
    one_hot = F.one_hot(labels, 7).float()
    assert torch.allclose(soft_cross_entropy(logits, one_hot, keep), F.cross_entropy(logits, labels))
    keep[1] = False  # a dropped row does not count
    expected = F.cross_entropy(logits[keep], labels[keep])
    assert torch.allclose(soft_cross_entropy(logits, one_hot, keep), expected)
    nothing = soft_cross_entropy(logits.requires_grad_(), one_hot, torch.zeros(5, dtype=torch.bool))
    assert nothing.item() == 0.0 and nothing.requires_grad


def test_image_target_is_the_area_share_and_dense_cells_need_half_a_label():
    targets = torch.full((1, 8, 8), IGNORE)
    targets[0, :, :6] = 1  # 48 pixels of class 1, 16 unlabelled
    targets[0, :2, :2] = 2  # 4 of them class 2
    image_logits = torch.zeros(1, 3)
    dense_logits = torch.zeros(1, 3, 2, 2)
    dense_logits[0, 1] = 5.0
    losses = recognition_losses(RecognitionOutput(image_logits, dense_logits), targets, dense_weight=0.0)
    assert set(losses) == {"image", "total"}
    assert losses["image"].item() == pytest.approx(math.log(3))  # uniform logits: ln C whatever the shares
    image_logits[0, 1] = 2.0
    shares = torch.tensor([0.0, 44 / 48, 4 / 48])
    expected = -(shares * image_logits.log_softmax(1)[0]).sum()
    losses = recognition_losses(RecognitionOutput(image_logits, dense_logits), targets, dense_weight=0.5)
    assert losses["image"].item() == pytest.approx(expected.item())
    # cells: top-left 4x4 has 4 of class 2 and 12 of class 1; top-right 4x4 is half labelled (class 1);
    # the bottom-right cell is half labelled too; all four count
    per_cell = -F.log_softmax(dense_logits[0].flatten(1).T, dim=1)  # [4, C]
    cell_shares = torch.tensor([[0, 12 / 16, 4 / 16], [0, 1, 0], [0, 1, 0], [0, 1, 0]])
    assert losses["dense"].item() == pytest.approx((cell_shares * per_cell).sum(1).mean().item(), rel=1e-5)
    assert losses["total"].item() == pytest.approx(losses["image"].item() + 0.5 * losses["dense"].item())
    targets[0, :, 4:] = IGNORE  # the right cells now hold no label: they drop out
    losses = recognition_losses(RecognitionOutput(image_logits, dense_logits), targets, dense_weight=0.5)
    assert losses["dense"].item() == pytest.approx((cell_shares[[0, 2]] * per_cell[[0, 2]]).sum(1).mean().item())


def test_clip_recognition_scores_every_class_with_the_clamped_temperature(tiny_backbone):
    model = ClipRecognition(tiny_backbone)
    bank = F.normalize(torch.randn(5, tiny_backbone.embed_dim), dim=-1)
    output = model(torch.randn(2, 3, 64, 64), bank)
    assert output.image_logits.shape == (2, 5) and output.dense_logits.shape == (2, 5, 8, 8)
    scale = tiny_backbone.clip.logit_scale.exp().item()
    assert output.image_logits.abs().max().item() <= scale + 1e-4  # scaled cosines
    with torch.no_grad():
        before = tiny_backbone.clip.logit_scale.clone()
        tiny_backbone.clip.logit_scale.fill_(10.0)
        try:
            clamped = model(torch.randn(1, 3, 64, 64), bank)
        finally:
            tiny_backbone.clip.logit_scale.copy_(before)
    assert clamped.image_logits.abs().max().item() <= math.exp(MAX_LOGIT_SCALE) + 1e-3
