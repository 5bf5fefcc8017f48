import dataclasses

import pytest
import torch
import torch.nn.functional as F

from dcpclip.model.config import HeadConfig
from dcpclip.model.losses import remap_to_kept, segmentation_losses
from dcpclip.model.output import SegmenterOutput

IGNORE = 255


def output(kept, kept_logits, num_classes, presence=None, coarse=None):
    """A SegmenterOutput of `num_classes` at 4 x the kept logits' resolution."""
    _, _, height, width = kept_logits.shape
    return SegmenterOutput(kept, kept_logits, presence, None, num_classes, (4 * height, 4 * width), -100.0, coarse)


def random_case(seed=0, batch=2, num_classes=10, size=16):
    generator = torch.Generator().manual_seed(seed)
    kept = torch.stack(
        [torch.randperm(num_classes, generator=generator)[:4].sort().values for _ in range(batch)]
    )
    targets = kept.gather(1, torch.randint(0, 4, (batch, size * size), generator=generator)).view(
        batch, size, size
    )
    targets[:, :3] = IGNORE
    kept_logits = torch.randn(batch, 4, size // 4, size // 4, generator=generator, requires_grad=True)
    return kept, targets, kept_logits


def test_remap_to_kept_by_hand():
    kept = torch.tensor([[2, 5, 7], [0, 1, 5]])
    targets = torch.tensor([[[7, 2], [IGNORE, 5]], [[5, 3], [0, IGNORE]]])
    expected = torch.tensor([[[2, 0], [IGNORE, 1]], [[2, IGNORE], [0, IGNORE]]])  # class 3 not kept: ignored
    assert torch.equal(remap_to_kept(targets, kept, 8, IGNORE), expected)


def test_remap_rejects_labels_outside_the_vocabulary_and_colliding_ignore_values():
    kept = torch.tensor([[0, 1]])
    with pytest.raises(ValueError, match="label 9, outside the vocabulary 0..7"):
        remap_to_kept(torch.tensor([[[9]]]), kept, 8, IGNORE)
    with pytest.raises(ValueError, match="collides"):
        remap_to_kept(torch.tensor([[[0]]]), kept, 8, 1)


def test_cross_entropy_over_kept_classes_matches_the_definition():
    kept, targets, kept_logits = random_case()
    losses = segmentation_losses(output(kept, kept_logits, 10), targets, HeadConfig(), IGNORE)
    upsampled = F.interpolate(kept_logits, size=(16, 16), mode="bilinear", align_corners=False)
    log_probs = upsampled.detach().log_softmax(dim=1)  # [B, K, H, W]
    total, count = 0.0, 0
    for b in range(2):
        for y in range(16):
            for x in range(16):
                label = int(targets[b, y, x])
                if label != IGNORE:
                    position = kept[b].tolist().index(label)
                    total -= float(log_probs[b, position, y, x])
                    count += 1
    assert losses["seg"].item() == pytest.approx(total / count, rel=1e-5)
    assert set(losses) == {"seg", "total"}  # no presence logits given: no pruning term
    assert losses["total"] is losses["seg"]


def test_per_class_bce_option():
    kept, targets, kept_logits = random_case(seed=1)
    head = HeadConfig(seg_loss="bce")
    loss = segmentation_losses(output(kept, kept_logits, 10), targets, head, IGNORE)["seg"]
    upsampled = F.interpolate(kept_logits, size=(16, 16), mode="bilinear", align_corners=False)
    labels = remap_to_kept(targets, kept, 10, IGNORE)
    valid = labels != IGNORE
    probs = upsampled.sigmoid().permute(0, 2, 3, 1)[valid]  # [N, K]
    one_hot = F.one_hot(labels[valid], 4).float()
    manual = -(one_hot * probs.log() + (1 - one_hot) * (1 - probs).log()).mean()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)


def test_pruning_and_auxiliary_terms_are_weighted_into_the_total():
    kept, targets, kept_logits = random_case(seed=2)
    presence = torch.randn(2, 10, requires_grad=True)
    coarse = torch.randn(2, 4, 4, 4, requires_grad=True)
    head = dataclasses.replace(HeadConfig(), prune_loss_weight=0.5, aux_loss_weight=0.3)
    losses = segmentation_losses(output(kept, kept_logits, 10, presence, coarse), targets, head, IGNORE)
    present = torch.zeros(2, 10)
    for b in range(2):
        present[b, targets[b][targets[b] != IGNORE].unique()] = 1
    expected_prune = F.binary_cross_entropy_with_logits(presence, present)
    assert losses["prune"].item() == pytest.approx(expected_prune.item(), rel=1e-6)
    aux_only = segmentation_losses(output(kept, coarse, 10), targets, HeadConfig(), IGNORE)["seg"]
    # the coarse maps are [B, K, 4, 4]: the same loss as if they were fine logits, upsampled to the labels
    assert losses["aux"].item() == pytest.approx(aux_only.item(), rel=1e-6)
    expected_total = losses["seg"] + 0.5 * losses["prune"] + 0.3 * losses["aux"]
    assert losses["total"].item() == pytest.approx(expected_total.item(), rel=1e-6)
    losses["total"].backward()
    assert presence.grad is not None and coarse.grad is not None and kept_logits.grad is not None
    unweighted = segmentation_losses(
        output(kept, kept_logits, 10, presence, coarse), targets, HeadConfig(prune_loss_weight=0.0), IGNORE
    )
    assert set(unweighted) == {"seg", "total"}


def test_an_unlabelled_crop_gives_a_zero_loss_not_nan():
    kept, targets, kept_logits = random_case(seed=3)
    targets.fill_(IGNORE)
    for kind in ("ce", "bce"):
        loss = segmentation_losses(output(kept, kept_logits, 10), targets, HeadConfig(seg_loss=kind), IGNORE)
        assert loss["total"].item() == 0.0
        loss["total"].backward()
