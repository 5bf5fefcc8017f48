"""Semantic segmentation metrics over a confusion matrix accumulated across a whole split.

The contract and the arithmetic follow detectron2's `SemSegEvaluator`
(detectron2/evaluation/sem_seg_evaluation.py), the evaluator that CAT-Seg, SED and ERR-Seg report with:
- pixels whose ground truth is the ignore value are dropped before counting;
- per-class IoU = TP / (GT + Pred - TP), where GT and Pred count only non-ignored pixels, so a false
  positive on a class absent from the ground truth still lowers the IoU of the pixel's true class;
- a class with no ground-truth pixel in the whole split has no IoU and no accuracy (None here, NaN there)
  and is left out of mIoU and mAcc, even if it was predicted;
- fwIoU weights each class's IoU by its share of ground-truth pixels; pAcc = sum(TP) / sum(GT);
- a split with no labelled pixel at all is not an error: mIoU, mAcc and pAcc are NaN (0 / 0) and fwIoU
  is 0 (an empty sum), as detectron2 returns them; the caller warns (`experiments.evaluate`).
All means are in percent.

Also averages the pruner's recall (share of ground-truth classes kept by the category pruner, a fraction)
and its recall curve (the same at other K) over the images that report one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch


class SemSegEvaluator:
    """`reset()`, then `process(prediction, target)` per image, then `evaluate()` once."""

    def __init__(self, num_classes: int, ignore_value: int, class_names: Sequence[str] | None = None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for num_classes={num_classes}")
        self.num_classes = num_classes
        self.ignore_value = ignore_value
        self.class_names = (
            list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        )
        self.reset()

    def reset(self) -> None:
        n = self.num_classes
        self.confusion = torch.zeros(n, n, dtype=torch.int64)  # [ground truth, prediction] pixel counts
        self.num_images = 0
        self._recall_sum = 0.0
        self._recall_count = 0
        self._recall_at_k_sums: dict[int, float] = {}
        self._recall_at_k_count = 0

    def process(self, prediction: torch.Tensor, target: torch.Tensor, recall: float | None = None,
                recall_at_k: Mapping[int, float] | None = None) -> None:
        """prediction [H, W] class indices; target [H, W] labels (ignore value allowed), same size.
        `recall`: the pruner's recall on this image (a fraction), if the model prunes; `recall_at_k`:
        {K: its recall keeping K classes per view}, the same K for every image."""
        prediction = torch.as_tensor(prediction)
        target = torch.as_tensor(target)
        if prediction.shape != target.shape or prediction.dim() != 2:
            raise ValueError(
                f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)}: "
                "expected the same [H, W] shape"
            )
        if prediction.is_floating_point() or target.is_floating_point():
            raise TypeError("prediction and target must hold integer class indices")
        n = self.num_classes
        target = target.reshape(-1).to(device="cpu", dtype=torch.int64)
        prediction = prediction.reshape(-1).to(device="cpu", dtype=torch.int64)
        valid = target != self.ignore_value
        target, prediction = target[valid], prediction[valid]
        if target.numel():
            bad_target = (target < 0) | (target >= n)
            if bad_target.any():
                raise ValueError(
                    f"target holds label {int(target[bad_target][0])}, outside 0..{n - 1} and not the "
                    f"ignore value {self.ignore_value}"
                )
            bad_prediction = (prediction < 0) | (prediction >= n)
            if bad_prediction.any():
                raise ValueError(
                    f"prediction holds class {int(prediction[bad_prediction][0])}, outside 0..{n - 1}"
                )
            self.confusion += torch.bincount(target * n + prediction, minlength=n * n).reshape(n, n)
        self.num_images += 1
        if recall is not None:
            self._recall_sum += float(recall)
            self._recall_count += 1
        if recall_at_k is not None:
            if self._recall_at_k_count and set(recall_at_k) != set(self._recall_at_k_sums):
                raise ValueError(f"recall at K {sorted(recall_at_k)}: earlier images gave K "
                                 f"{sorted(self._recall_at_k_sums)}")
            for k, value in recall_at_k.items():
                self._recall_at_k_sums[k] = self._recall_at_k_sums.get(k, 0.0) + float(value)
            self._recall_at_k_count += 1

    def evaluate(self) -> dict:
        """Metrics in percent, as plain Python floats (NaN where undefined: a split without a labelled
        pixel); per-class values are None for classes without GT.
        `pruner_recall` is a fraction in [0, 1] (as in `dcpclip.records.EvalRecord`), None if no image
        reported one; `pruner_recall_at_k` {K: fraction} in ascending K, None likewise."""
        confusion = self.confusion.numpy().astype(np.float64)
        total = confusion.sum()
        true_positive = np.diag(confusion)
        ground_truth = confusion.sum(axis=1)
        predicted = confusion.sum(axis=0)
        present = ground_truth > 0  # union > 0 follows
        iou = np.full(self.num_classes, np.nan)
        accuracy = np.full(self.num_classes, np.nan)
        iou[present] = true_positive[present] / (ground_truth + predicted - true_positive)[present]
        accuracy[present] = true_positive[present] / ground_truth[present]
        weights = ground_truth / total if total else np.zeros(self.num_classes)
        recall = self._recall_sum / self._recall_count if self._recall_count else None
        recall_at_k = {k: self._recall_at_k_sums[k] / self._recall_at_k_count
                       for k in sorted(self._recall_at_k_sums)} if self._recall_at_k_count else None
        return {
            "mIoU": 100 * _mean_or_nan(iou[present]),
            "fwIoU": 100 * float((iou[present] * weights[present]).sum()),
            "mAcc": 100 * _mean_or_nan(accuracy[present]),
            "pAcc": 100 * float(true_positive.sum() / total) if total else float("nan"),
            "per_class_iou": _percent_or_none(iou),
            "per_class_acc": _percent_or_none(accuracy),
            "class_names": list(self.class_names),
            "classes_with_ground_truth": int(present.sum()),
            "num_images": self.num_images,
            "num_pixels": int(total),
            "pruner_recall": recall,
            "pruner_recall_at_k": recall_at_k,
        }


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _percent_or_none(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else 100 * float(v) for v in values]
