"""The evaluator against hand-computed confusion matrices and a brute-force per-class reference."""

import math

import numpy as np
import pytest
import torch

from dcpclip.engine.evaluator import SemSegEvaluator


def _evaluate(num_classes, pairs, ignore_value=255, recalls=None):
    evaluator = SemSegEvaluator(num_classes, ignore_value)
    for i, (prediction, target) in enumerate(pairs):
        recall = recalls[i] if recalls else None
        evaluator.process(torch.tensor(prediction), torch.tensor(target), recall=recall)
    return evaluator, evaluator.evaluate()


def test_hand_computed_with_ignore_pixels():
    # The ignored pixel (1, 1) is predicted as class 0; counting it would drop IoU_0 from 1/2 to 1/3.
    target = [[0, 0, 1], [1, 255, 2]]
    prediction = [[0, 1, 1], [2, 0, 2]]
    evaluator, result = _evaluate(3, [(prediction, target)])
    assert evaluator.confusion.tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]  # rows: ground truth
    iou = [1 / 2, 1 / 3, 1 / 2]  # TP / (GT + Pred - TP) with GT = [2, 2, 1], Pred = [1, 2, 2]
    assert result["per_class_iou"] == pytest.approx([100 * v for v in iou])
    assert result["mIoU"] == pytest.approx(100 * sum(iou) / 3)
    assert result["fwIoU"] == pytest.approx(100 * (iou[0] * 2 / 5 + iou[1] * 2 / 5 + iou[2] * 1 / 5))
    assert result["mAcc"] == pytest.approx(100 * (1 / 2 + 1 / 2 + 1) / 3)
    assert result["pAcc"] == pytest.approx(100 * 3 / 5)
    assert result["num_pixels"] == 5
    assert isinstance(result["mIoU"], float)


def test_absent_classes_are_excluded_but_their_false_positives_count():
    # Class 2 never occurs in the ground truth but is predicted once; class 3 occurs nowhere.
    target = [[0, 0, 0, 1]]
    prediction = [[0, 2, 0, 1]]
    _, result = _evaluate(4, [(prediction, target)])
    iou_0 = 2 / (3 + 2 - 2)  # the false positive on class 2 is a miss of class 0
    assert result["per_class_iou"] == [pytest.approx(100 * iou_0), pytest.approx(100.0), None, None]
    assert result["per_class_acc"] == [pytest.approx(100 * 2 / 3), pytest.approx(100.0), None, None]
    assert result["mIoU"] == pytest.approx(100 * (iou_0 + 1) / 2)  # over the 2 classes with ground truth
    assert result["mAcc"] == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert result["pAcc"] == pytest.approx(75.0)
    assert result["fwIoU"] == pytest.approx(100 * (iou_0 * 3 / 4 + 1 * 1 / 4))
    assert result["classes_with_ground_truth"] == 2


def test_class_present_only_in_predictions_of_one_image_is_counted_over_the_split():
    # Class 1 has ground truth only in the second image; the first image's false positive on it still
    # counts, because the matrix is accumulated over the whole split before dividing.
    pairs = [([[1, 0]], [[0, 0]]), ([[1, 1]], [[1, 1]])]
    evaluator, result = _evaluate(2, pairs)
    assert evaluator.confusion.tolist() == [[1, 1], [0, 2]]
    assert result["per_class_iou"] == [pytest.approx(50.0), pytest.approx(100 * 2 / 3)]
    # Averaging per-image mIoUs instead would give (50 + 100) / 2 = 75.
    assert result["mIoU"] == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    assert result["num_images"] == 2


def test_ignore_value_equal_to_num_classes_like_pc459():
    _, result = _evaluate(3, [([[0, 1, 2]], [[0, 3, 2]])], ignore_value=3)
    assert result["num_pixels"] == 2
    assert result["per_class_iou"] == [pytest.approx(100.0), None, pytest.approx(100.0)]


def _brute_force(num_classes, pairs, ignore_value):
    tp = np.zeros(num_classes)
    gt = np.zeros(num_classes)
    pred = np.zeros(num_classes)
    for prediction, target in pairs:
        valid = target != ignore_value
        for c in range(num_classes):
            tp[c] += np.sum((target == c) & (prediction == c) & valid)
            gt[c] += np.sum((target == c) & valid)
            pred[c] += np.sum((prediction == c) & valid)
    present = [c for c in range(num_classes) if gt[c] > 0]
    iou = {c: tp[c] / (gt[c] + pred[c] - tp[c]) for c in present}
    return {
        "mIoU": 100 * sum(iou.values()) / len(present),
        "fwIoU": 100 * sum(iou[c] * gt[c] for c in present) / gt.sum(),
        "mAcc": 100 * sum(tp[c] / gt[c] for c in present) / len(present),
        "pAcc": 100 * tp.sum() / gt.sum(),
        "per_class_iou": [100 * iou[c] if c in iou else None for c in range(num_classes)],
    }


@pytest.mark.parametrize("num_classes, ignore_value", [(7, 255), (20, 65535)])
def test_matches_brute_force_reference_on_random_data(num_classes, ignore_value):
    rng = np.random.default_rng(num_classes)
    pairs = []
    for _ in range(5):
        height, width = rng.integers(5, 40, size=2)
        # Skewed labels (rare classes), the last class never in the ground truth, 10% ignored pixels.
        target = np.minimum(rng.geometric(0.35, size=(height, width)) - 1, num_classes - 2)
        target[rng.random((height, width)) < 0.1] = ignore_value
        prediction = np.where(
            rng.random((height, width)) < 0.6, target, rng.integers(0, num_classes, (height, width))
        )
        prediction[prediction == ignore_value] = 0
        pairs.append((prediction, target))
    _, result = _evaluate(num_classes, pairs, ignore_value=ignore_value)
    expected = _brute_force(num_classes, pairs, ignore_value)
    assert None in expected["per_class_iou"]  # the case of absent classes is exercised
    for key in ("mIoU", "fwIoU", "mAcc", "pAcc"):
        assert result[key] == pytest.approx(expected[key], rel=1e-12)
    assert [v is None for v in result["per_class_iou"]] == [v is None for v in expected["per_class_iou"]]
    assert [v for v in result["per_class_iou"] if v is not None] == pytest.approx(
        [v for v in expected["per_class_iou"] if v is not None]
    )


def test_reset_clears_the_split_and_recall_is_averaged_over_reporting_images():
    evaluator, result = _evaluate(
        2, [([[0]], [[0]]), ([[1]], [[1]]), ([[0]], [[1]])], recalls=[0.5, None, 1.0]
    )
    assert result["pruner_recall"] == pytest.approx(0.75)
    evaluator.reset()
    assert evaluator.confusion.sum() == 0 and evaluator.num_images == 0
    evaluator.process(torch.tensor([[1]]), torch.tensor([[1]]))
    assert evaluator.evaluate()["pruner_recall"] is None


def test_bad_inputs_fail_with_clear_messages():
    evaluator = SemSegEvaluator(3, 255, ["a", "b", "c"])
    with pytest.raises(ValueError, match="same"):
        evaluator.process(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="label 7"):
        evaluator.process(torch.zeros(1, 2, dtype=torch.long), torch.tensor([[0, 7]]))
    with pytest.raises(ValueError, match="class 3"):
        evaluator.process(torch.tensor([[3, 0]]), torch.tensor([[0, 0]]))
    with pytest.raises(ValueError, match="2 class names"):
        SemSegEvaluator(3, 255, ["a", "b"])


def test_a_split_without_a_labelled_pixel_gives_detectron2s_nan_not_an_error():
    evaluator = SemSegEvaluator(3, 255, ["a", "b", "c"])
    assert math.isnan(evaluator.evaluate()["mIoU"])  # nothing processed
    evaluator.process(torch.tensor([[0, 2]]), torch.tensor([[255, 255]]))  # every pixel ignored
    metrics = evaluator.evaluate()
    assert all(math.isnan(metrics[key]) for key in ("mIoU", "mAcc", "pAcc"))
    assert metrics["fwIoU"] == 0.0  # detectron2: the sum over no class
    assert metrics["per_class_iou"] == [None, None, None] and metrics["num_pixels"] == 0
