"""Whole-image and sliding-window inference with small test-double models."""

import dataclasses

import pytest
import torch

from dcpclip.data.specs import SPECS
from dcpclip.engine.config import EvalConfig
from dcpclip.engine.inference import (
    InferenceSettings,
    class_probabilities,
    infer,
    predict_batch,
    predict_labels,
    pruner_recall,
    recall_at_k,
    resized_argmax,
)
from dcpclip.flop_records import counting_fingerprint
from dcpclip.paths import evaluation_fingerprint
from experiments.compose import compose_config


@dataclasses.dataclass
class Output:
    logits: torch.Tensor
    kept: torch.Tensor | None = None


class PixelModel:
    """A per-pixel (1x1) model: the logit of class c is log(channel c), so with channels that are
    positive and sum to 1 over the classes the softmax returns the channels themselves."""

    def __call__(self, images, text_bank):
        return Output(images[:, : text_bank.shape[0]].log())


class RecordingModel:
    """Constant logits at a quarter of the input resolution; records the batches it sees."""

    def __init__(self):
        self.inputs = []

    def __call__(self, images, text_bank):
        self.inputs.append(tuple(images.shape))
        batch, _, height, width = images.shape
        return Output(torch.zeros(batch, text_bank.shape[0], height // 4, width // 4))


def _ramp_image(height, width):
    """Channel 0 bilinear in (y, x), channel 1 = 1 - channel 0: bilinear resizing reproduces it exactly
    wherever no sample is clamped at the border."""
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None, :]
    first = 0.2 + 0.4 * x + 0.3 * y  # in [0.2, 0.9]
    return torch.stack([first, 1 - first, torch.zeros(height, width)])  # [3, H, W]


def test_sliding_equals_whole_for_a_per_pixel_model_where_resizing_is_exact():
    # The image is already the (window + stride)^2 square, so the squash and the window cuts are exact;
    # the global view's downsizing of a bilinear ramp is exact, and its upsizing back is exact except in
    # the outermost rows and columns, where bilinear sampling clamps at the border.
    window, stride = 64, 32
    image = _ramp_image(window + stride, window + stride)
    text_bank = torch.zeros(2, 8)
    whole = infer(PixelModel(), image, text_bank, InferenceSettings("whole", window, stride, "ce"))
    sliding = infer(PixelModel(), image, text_bank, InferenceSettings("sliding", window, stride, "ce"))
    assert whole.views == 1 and sliding.views == 5
    assert torch.allclose(whole.probabilities, image[:2], atol=1e-6)
    assert sliding.probabilities.shape == (2, window + stride, window + stride)
    assert torch.allclose(sliding.probabilities[:, 1:-1, 1:-1], whole.probabilities[:, 1:-1, 1:-1], atol=1e-5)


def test_sliding_equals_whole_after_resizing_back_to_a_non_square_original():
    window, stride = 64, 32
    image = _ramp_image(72, 120)  # squashed to 96 x 96 and resized back to 72 x 120
    text_bank = torch.zeros(2, 8)
    whole = infer(PixelModel(), image, text_bank, InferenceSettings("whole", window, stride, "ce"))
    sliding = infer(PixelModel(), image, text_bank, InferenceSettings("sliding", window, stride, "ce"))
    back = torch.nn.functional.interpolate(sliding.probabilities[None], size=(72, 120), mode="bilinear")[0]
    assert torch.allclose(back[:, 2:-2, 2:-2], whole.probabilities[:, 2:-2, 2:-2], atol=1e-5)


class ViewMaxModel:
    """Each view gets one probability for class 0 over the whole view: 0.9 if channel 0 reaches 1
    anywhere in the view, else 0.1 (a maximum survives the bilinear resizing of a wide step)."""

    def __call__(self, images, text_bank):
        hit = images[:, 0].flatten(1).max(dim=1).values > 0.99  # [B]
        first = torch.where(hit, 0.9, 0.1)[:, None, None, None].expand(-1, 1, *images.shape[-2:])
        return Output(torch.cat([first, 1 - first], dim=1).log())


def test_sliding_merge_averages_overlapping_windows_then_weighs_the_global_view_one_half():
    window, stride = 64, 32
    image = torch.zeros(3, 96, 96)
    image[0, :, :32] = 1  # only the windows at horizontal offset 0 see it; the global view does too
    result = infer(
        ViewMaxModel(), image, torch.zeros(2, 8), InferenceSettings("sliding", window, stride, "ce")
    )
    first = result.probabilities[0]
    # columns 0..31: windows at offset 0 only (0.9), global 0.9; columns 32..63: both offsets
    # (0.9 and 0.1 average to 0.5), global 0.9; columns 64..95: offset 32 only (0.1), global 0.9.
    assert torch.allclose(first[:, :32], torch.tensor(0.9))
    assert torch.allclose(first[:, 32:64], torch.tensor((0.5 + 0.9) / 2))
    assert torch.allclose(first[:, 64:], torch.tensor((0.1 + 0.9) / 2))


def test_protocol_geometry_uses_four_windows_and_a_global_view_in_one_batch():
    settings = InferenceSettings.from_config(EvalConfig(), window=384, seg_loss="ce", size_divisor=16)
    assert (settings.mode, settings.window, settings.stride) == ("sliding", 384, 256)
    model = RecordingModel()
    result = infer(model, torch.zeros(3, 640, 853), torch.zeros(5, 8), settings)
    assert model.inputs == [(5, 3, 384, 384)]
    assert result.views == 5
    assert result.probabilities.shape == (5, 640, 640)  # the squashed square, before resizing back
    assert result.kept is None  # the model reports no pruning
    assert torch.allclose(result.probabilities, torch.tensor(0.2))  # softmax of 5 equal logits


def test_whole_image_pads_to_the_size_divisor_and_crops_back():
    model = RecordingModel()
    settings = InferenceSettings("whole", 64, 32, "bce", size_divisor=16)
    result = infer(model, torch.zeros(3, 70, 90), torch.zeros(3, 8), settings)
    assert model.inputs == [(1, 3, 80, 96)]
    assert result.views == 1
    assert result.probabilities.shape == (3, 70, 90)
    assert torch.allclose(result.probabilities, torch.tensor(0.5))  # sigmoid(0), not a softmax


def test_probabilities_follow_the_training_loss():
    logits = torch.randn(2, 4, 3, 5)
    assert torch.allclose(class_probabilities(logits, "ce").sum(dim=1), torch.ones(2, 3, 5))
    assert torch.allclose(class_probabilities(logits, "bce"), torch.sigmoid(logits))
    with pytest.raises(ValueError, match="seg_loss"):
        class_probabilities(logits, "focal")


def test_predict_labels_at_the_original_size():
    # A left/right two-class image at half the original size: upsampled, the boundary stays in the middle.
    image = torch.zeros(3, 32, 64)
    image[0, :, :32] = 0.9
    image[0, :, 32:] = 0.1
    image[1] = 1 - image[0]
    for mode in ("whole", "sliding"):
        prediction = predict_labels(
            PixelModel(),
            image,
            torch.zeros(2, 8),
            InferenceSettings(mode, 64, 32, "ce"),
            output_size=(64, 128),
        )
        assert prediction.labels.shape == (64, 128) and prediction.labels.dtype == torch.int64
        assert (prediction.labels[:, :64] == 0).all() and (prediction.labels[:, 64:] == 1).all()


def test_pas20b_argmax_over_59_prompts_then_background():
    spec = SPECS["pas20b"]
    prompt_map = torch.tensor([[3, 19, 20], [45, 58, 0]])

    def model(images, text_bank):
        assert images.shape[-2:] == prompt_map.shape
        one_hot = torch.nn.functional.one_hot(prompt_map, text_bank.shape[0]).permute(2, 0, 1).float()
        return Output(10 * one_hot[None])

    prediction = predict_labels(
        model,
        torch.zeros(3, 2, 3),
        torch.zeros(spec.num_prompts, 8),
        InferenceSettings("whole", 64, 32, "ce"),
        output_size=(2, 3),
        prompt_to_label=spec.prompt_to_label,
    )
    assert prediction.labels.tolist() == [[3, 19, 20], [20, 20, 0]]


def test_chunked_argmax_matches_a_plain_argmax_including_ties():
    scores = torch.rand(150, 7, 9)
    scores[100] = scores[3]  # a tie across chunks goes to the lower index
    scores[3, 0, 0] = scores[100, 0, 0] = 2.0
    resized = torch.nn.functional.interpolate(scores[None], size=(13, 11), mode="bilinear")[0]
    labels = resized_argmax(scores, (13, 11))
    assert torch.equal(labels, resized.argmax(dim=0))
    assert labels[0, 0] == 3


def test_bad_settings_and_outputs_fail_clearly():
    with pytest.raises(ValueError, match="stride 96"):
        InferenceSettings("sliding", 64, 96, "ce")
    with pytest.raises(ValueError, match="mode"):
        InferenceSettings("tiles", 64, 32, "ce")
    with pytest.raises(ValueError, match="logits"):
        infer(
            lambda images, text_bank: Output(torch.zeros(1, 3, 4, 4)),  # 3 classes for a bank of 2
            torch.zeros(3, 16, 16),
            torch.zeros(2, 8),
            InferenceSettings("whole", 64, 32, "ce"),
        )
    with pytest.raises(ValueError, match=r"\[3, h, w\]"):
        infer(
            PixelModel(),
            torch.zeros(1, 3, 16, 16),
            torch.zeros(2, 8),
            InferenceSettings("whole", 64, 32, "ce"),
        )


def test_kept_classes_are_the_union_over_views_and_recall_is_measured_on_labels():
    def model(images, text_bank):
        kept = torch.tensor([[0], [1], [1], [2], [0]])  # one kept class per view
        return Output(torch.zeros(len(images), text_bank.shape[0], 4, 4), kept=kept)

    result = infer(
        model, torch.zeros(3, 40, 40), torch.zeros(6, 8), InferenceSettings("sliding", 32, 16, "ce")
    )
    assert result.kept.tolist() == [True, True, True, False, False, False]
    target = torch.tensor([[0, 2, 3], [255, 3, 0]])
    assert pruner_recall(result.kept, target, ignore_value=255) == pytest.approx(2 / 3)  # 0, 2 of 0, 2, 3
    assert pruner_recall(result.kept, torch.full((2, 2), 255), ignore_value=255) is None


def test_pas20b_recall_counts_background_as_kept_when_any_context_prompt_is():
    spec = SPECS["pas20b"]
    kept = torch.zeros(spec.num_prompts, dtype=torch.bool)
    kept[[3, 45]] = True  # a VOC class and a context class
    target = torch.tensor([[3, 20, 7, 255]])
    assert pruner_recall(kept, target, 255, spec.prompt_to_label) == pytest.approx(2 / 3)
    assert pruner_recall(kept, target, 255) == pytest.approx(1 / 3)  # without the rule only 3 counts


@pytest.mark.parametrize("variant", ["full", "no_prune", "no_dual", "static_text", "zero_shot"])
@pytest.mark.parametrize("mode, seg_loss", [("sliding", "ce"), ("whole", "ce"), ("sliding", "bce")])
def test_the_sparse_output_gives_the_labels_of_the_dense_logits(variant, mode, seg_loss):
    from dcpclip.model.build import build_model
    from dcpclip.model.variants import variant_head
    from experiments.compose import compose_config

    cfg = compose_config(["pretrain=none"])
    torch.manual_seed(0)
    model = build_model(cfg.backbone, variant_head(cfg.head, variant)).eval()  # pruning ones keep 8 per view
    generator = torch.Generator().manual_seed(1)
    text_bank = torch.nn.functional.normalize(torch.randn(150, model.backbone.embed_dim, generator=generator), dim=-1)
    settings = InferenceSettings(mode, 64, 32, seg_loss, size_divisor=8)
    dense_kept = lambda images, bank: Output(*(lambda o: (o.logits, o.kept))(model(images, bank)))  # noqa: E731
    every_class = lambda images, bank: Output(model(images, bank).logits)  # noqa: E731  (reports no pruning)
    prunes = variant in ("full", "no_dual", "static_text")
    for seed in range(3):
        image = torch.randn(3, 96, 128, generator=generator.manual_seed(seed))
        sparse, dense, full = (infer(m, image, text_bank, settings) for m in (model, dense_kept, every_class))
        # the sparse path carries exactly what the dense [V, C, H, W] path carried, value for value
        assert torch.equal(sparse.classes, dense.classes) and torch.equal(sparse.probabilities, dense.probabilities)
        assert full.classes is None and full.probabilities.shape[0] == 150
        assert sparse.classes.tolist() == sparse.kept.nonzero()[:, 0].tolist()
        if prunes:
            assert 8 <= len(sparse.classes) <= 8 * sparse.views < 150
            assert full.probabilities[~sparse.kept].max() < 1e-30  # what is left out could never win
        else:
            assert len(sparse.classes) == 150
        assert torch.allclose(sparse.probabilities, full.probabilities[sparse.classes], atol=1e-6)
        labels = predict_labels(model, image, text_bank, settings, (120, 160)).labels
        for reference in (dense_kept, every_class):
            assert torch.equal(labels, predict_labels(reference, image, text_bank, settings, (120, 160)).labels)
        assert sparse.kept[labels].all()


def test_the_paper_profile_evaluates_under_bf16_autocast_and_the_offline_one_does_not():
    paper, offline = compose_config(["profile=paper"]), compose_config([])
    settings = [InferenceSettings.from_config(c.eval, c.backbone.image_size, "ce", 16) for c in (paper, offline)]
    assert [s.amp for s in settings] == [True, False]
    # the precision is part of what an evaluation is keyed on, not of what a FLOP count is
    assert evaluation_fingerprint(paper) != evaluation_fingerprint(dataclasses.replace(
        paper, eval=dataclasses.replace(paper.eval, amp=False)))
    assert counting_fingerprint(paper) == counting_fingerprint(dataclasses.replace(
        paper, eval=dataclasses.replace(paper.eval, amp=False)))


def test_recall_at_k_keeps_the_union_of_each_views_k_best_classes():
    presence = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0],  # view 0 ranks 0 > 1 > 2 > ...
                             [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])  # view 1 ranks 5 > 4 > 3 > ...
    target = torch.tensor([[1, 3, 255], [2, 2, 1]])  # classes 1, 2, 3
    curve = recall_at_k(presence, [1, 2, 3, 10], target, ignore_value=255)
    # K=1 keeps {0, 5}: none; K=2 {0, 1, 4, 5}: 1; K=3 adds 2 and 3: all; K > C keeps all C
    assert curve == {1: 0.0, 2: pytest.approx(1 / 3), 3: 1.0, 10: 1.0}
    assert recall_at_k(presence, [1, 2], torch.full((2, 2), 255), ignore_value=255) is None


@pytest.mark.parametrize("variant", ["full", "no_prune", "zero_shot"])
@pytest.mark.parametrize("mode", ["sliding", "whole"])
def test_a_batch_of_images_gets_the_labels_of_each_image_alone(variant, mode):
    """eval.batch_images: the views of several images share one forward (whole mode: those of one padded
    size), and every image gets the labels, kept classes and presence scores it gets alone."""
    from dcpclip.model.build import build_model
    from dcpclip.model.variants import variant_head

    cfg = compose_config(["pretrain=none"])
    torch.manual_seed(0)
    model = build_model(cfg.backbone, variant_head(cfg.head, variant)).eval()
    generator = torch.Generator().manual_seed(2)
    text_bank = torch.nn.functional.normalize(torch.randn(150, model.backbone.embed_dim, generator=generator), dim=-1)
    settings = InferenceSettings(mode, 64, 32, "ce", size_divisor=8)
    sizes = [(96, 128), (96, 128), (96, 120), (100, 128)]  # whole mode: three padded sizes, one group of two
    images = [torch.randn(3, *size, generator=generator) for size in sizes]
    outputs = [(s[0] + 4, s[1] + 4) for s in sizes]
    batched = predict_batch(model, images, text_bank, settings, outputs)
    for image, size, together in zip(images, outputs, batched, strict=True):
        alone = predict_labels(model, image, text_bank, settings, size)
        assert torch.equal(together.labels, alone.labels) and together.views == alone.views
        assert (together.kept is None) == (alone.kept is None)
        if alone.kept is not None:
            assert torch.equal(together.kept, alone.kept)
        if alone.presence is not None:
            assert torch.allclose(together.presence, alone.presence, atol=1e-5)
