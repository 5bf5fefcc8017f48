"""From one prepared evaluation image to a label map at the image's original size.

Two modes (`EvalConfig.mode`):
- "sliding", CAT-Seg's test-time scheme (`CATSeg.inference_sliding_window` in KU-CVLAB/CAT-Seg,
  cat_seg/cat_seg_model.py), generalised from its 384/256 constants to any window and stride: the image is
  squashed (bilinear, aspect not kept) to a square of side `window + stride`, which holds exactly the 2 x 2
  windows of side `window` at offsets {0, stride}; one more global view is the image resized to
  `window x window`. All five views go through the model as one batch (with the views of the other images
  of an evaluation batch, `eval.batch_images`: every image's views have the window's size). Each view's
  logits are resized
  (bilinear) to the view's size and turned into per-class probabilities; window probabilities are averaged
  where windows overlap, the global view's are resized to the square, and the two are averaged with equal
  weight. With window 384 and stride 256 this is CAT-Seg's 640 x 640 square. CAT-Seg normalises after
  cutting the views and we before; bilinear resizing is linear, so that order does not matter.
- "whole", one pass over the whole image (SED's setting): the image is padded at the bottom and right with
  zeros (the mean colour after CLIP normalisation, as detectron2's `ImageList` pads) to a multiple of
  `size_divisor` (the patch size), the logits are resized to the padded size and cropped back. Images of
  one batch whose padded sizes agree share a forward.

Either way the merged probabilities are resized (bilinear, as detectron2's `sem_seg_postprocess`) to the
original size, and the label is the argmax, mapped through the benchmark's prompt-to-label rule (PAS-20b:
prompts 20..58 -> background 20). Probabilities are a softmax over classes for a head trained with
cross-entropy and a per-class sigmoid for one trained with binary cross-entropy (CAT-Seg).

The model contract: `model(images [B, 3, h, w], text_bank [C, D])` returns either a sparse
`dcpclip.model.output.SegmenterOutput` (`.kept` [B, K], the vocabulary indices the category pruner kept,
and `.kept_logits_at_input()` [B, K, h, w]: what DCP-CLIP and zero_shot return, so no [B, C, h, w] tensor
is ever made), or an object with dense `.logits` [B, C, h', w'] (any h', w') and optionally `.kept`.
The pruner's recall on an image (DCP-CLIP: the share of its ground-truth classes that are kept) is
measured on the union of the views' kept sets: a class kept by any view can still win the merged argmax
somewhere, so that union is what bounds the achievable mIoU. `recall_at_k` measures the same for other K
from the same pass: the union of each view's K best classes by the pruner's presence scores (the model's
`.presence_logits` [V, C]), so at the trained K it equals the pruner's recall.

Only the classes of that union are carried past the model (probabilities, merge, resizes, argmax): a class
no view kept has the pruned logit (-100) in every view, probability ~1e-44, and can never win the argmax.
This changes no label (tested against carrying all C) and, with C = 847 at the protocol's geometry, turns
gigabytes of per-image probabilities into tens of megabytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, Literal

import torch
import torch.nn.functional as F

from dcpclip.engine.config import EvalConfig

ARGMAX_CLASS_CHUNK = 64  # classes resized to full size at a time (memory bound for 847 classes); exact


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
    mode: Literal["sliding", "whole"]
    window: int  # side of a sliding window: the backbone's input size
    stride: int  # offset between sliding windows
    seg_loss: Literal["ce", "bce"]  # how the head was trained: softmax or sigmoid probabilities
    size_divisor: int = 1  # whole mode pads each side to a multiple of this (the patch size)
    amp: bool = False  # bf16 autocast of the model's forward when the views are on CUDA

    def __post_init__(self):
        if self.mode not in ("sliding", "whole"):
            raise ValueError(f"inference mode {self.mode!r}: expected 'sliding' or 'whole'")
        if self.seg_loss not in ("ce", "bce"):
            raise ValueError(f"seg_loss {self.seg_loss!r}: expected 'ce' or 'bce'")
        if not 0 < self.stride <= self.window:
            raise ValueError(f"window stride {self.stride}: must be in 1..window ({self.window})")
        if self.size_divisor < 1:
            raise ValueError(f"size_divisor {self.size_divisor}: must be >= 1")

    @classmethod
    def from_config(
        cls, eval_cfg: EvalConfig, window: int, seg_loss: Literal["ce", "bce"], size_divisor: int
    ) -> InferenceSettings:
        """`window` = backbone.image_size; `seg_loss` from the (variant-resolved) head config;
        `size_divisor` = the backbone's patch size."""
        return cls(eval_cfg.mode, window, eval_cfg.window_stride, seg_loss, size_divisor, eval_cfg.amp)


@dataclasses.dataclass
class Inference:
    probabilities: torch.Tensor  # [C', h, w] merged probabilities of `classes` (before the final resize)
    views: int  # forward passes of the image tower (for FLOP accounting)
    kept: torch.Tensor | None  # [C] bool, kept by the pruner in at least one view (None: model reports none)
    classes: torch.Tensor | None = None  # [C'] ascending vocabulary indices of the rows (None: all C)
    presence: torch.Tensor | None = None  # [V, C] the pruner's class-presence scores per view (None: no pruner)


@dataclasses.dataclass
class Prediction:
    labels: torch.Tensor  # [H, W] int64 label indices at the original size
    views: int
    kept: torch.Tensor | None  # [C] bool over prompts, as in `Inference`
    presence: torch.Tensor | None = None  # [V, C], as in `Inference`


Model = Callable[[torch.Tensor, torch.Tensor], Any]


def class_probabilities(logits: torch.Tensor, seg_loss: str) -> torch.Tensor:
    """logits [B, C, h, w] -> probabilities [B, C, h, w]: softmax over C ("ce") or sigmoid ("bce")."""
    if seg_loss == "ce":
        return logits.softmax(dim=1)
    if seg_loss == "bce":
        return logits.sigmoid()
    raise ValueError(f"seg_loss {seg_loss!r}: expected 'ce' or 'bce'")


def infer(
    model: Model, image: torch.Tensor, text_bank: torch.Tensor, settings: InferenceSettings
) -> Inference:
    """image [3, h, w] (CLIP-normalised); text_bank [C, D] -> merged probabilities [C', h*, w*] of the
    classes carried past the model (`Inference.classes`)."""
    return infer_batch(model, [image], text_bank, settings)[0]


@torch.no_grad()
def infer_batch(
    model: Model, images: Sequence[torch.Tensor], text_bank: torch.Tensor, settings: InferenceSettings
) -> list[Inference]:
    """Each image [3, h, w] as `infer` gives it, the views of images whose views agree in size (all of them
    in sliding mode) going through the model in one forward."""
    for image in images:
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"expected images [3, h, w], got {tuple(image.shape)}")
    # pruned classes' probabilities (logit -100 -> ~1e-44) are denormal floats, which x86 CPUs process
    # tens of times slower (8.6 s vs 0.17 s to resize one view's probabilities, benchmarks/throughput.py);
    # flushing them to zero cannot change an argmax whose winner has probability >= 1/C
    torch.set_flush_denormal(True)
    views = [model_views(image, settings) for image in images]  # each [V, 3, s, s']
    results: list[Inference | None] = [None] * len(images)
    for group in _same_size(views):
        batch = torch.cat([views[i] for i in group])  # [sum V, 3, s, s']
        with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=settings.amp and batch.is_cuda):
            output = model(batch, text_bank)
        carried, start = [], 0
        for i in group:
            count = len(views[i])
            rows = output if len(group) == 1 else _view_rows(output, start, start + count, len(batch))
            start += count
            carried.append([_carried(rows, views[i], text_bank.shape[0])])  # a holder the merge empties
        # the carried logits are all that is left of the output; each merge takes its image's out of its
        # holder, so they are freed as soon as their probabilities exist (zero_shot's are the output's own,
        # 2.5 GB at C = 847 and 384 x 384)
        del output, rows
        for i, holder in zip(group, carried, strict=True):
            if settings.mode == "sliding":
                results[i] = _sliding_merge(holder, settings)
            else:
                results[i] = _whole_crop(holder, tuple(images[i].shape[-2:]), settings)
    return results


def _same_size(views: Sequence[torch.Tensor]) -> list[list[int]]:
    """Indices of `views` grouped by view size, in order of first appearance."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image_views in enumerate(views):
        groups.setdefault(tuple(image_views.shape[1:]), []).append(i)
    return list(groups.values())


def _view_rows(output, start: int, stop: int, batch: int):
    """The rows start:stop (one image's views) of a model output over `batch` views: every tensor field
    whose first dimension is the batch, sliced; a dataclass stays its own type."""
    def rows(value):
        return value[start:stop] if isinstance(value, torch.Tensor) and value.dim() and len(value) == batch else value

    if dataclasses.is_dataclass(output):
        return dataclasses.replace(output, **{f.name: rows(getattr(output, f.name))
                                              for f in dataclasses.fields(output) if f.init})
    return SimpleNamespace(**{name: rows(getattr(output, name)) for name in ("logits", "kept", "presence_logits")
                              if hasattr(output, name)})


def predict_labels(
    model: Model,
    image: torch.Tensor,
    text_bank: torch.Tensor,
    settings: InferenceSettings,
    output_size: tuple[int, int],
    prompt_to_label: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Prediction:
    """A prepared (resized, normalised) image [3, h, w] -> labels [H, W] at `output_size` (the original
    image size). `prompt_to_label` maps prompt indices to label indices (`DatasetSpec.prompt_to_label`)."""
    return predict_batch(model, [image], text_bank, settings, [output_size], prompt_to_label)[0]


def predict_batch(
    model: Model,
    images: Sequence[torch.Tensor],
    text_bank: torch.Tensor,
    settings: InferenceSettings,
    output_sizes: Sequence[tuple[int, int]],
    prompt_to_label: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[Prediction]:
    """`predict_labels` of each image (its original size in `output_sizes`), through `infer_batch`."""
    predictions = []
    for result, size in zip(infer_batch(model, images, text_bank, settings), output_sizes, strict=True):
        labels = resized_argmax(result.probabilities, size)
        if result.classes is not None:
            labels = result.classes[labels]  # rows -> vocabulary indices
        if prompt_to_label is not None:
            labels = prompt_to_label(labels)
        predictions.append(Prediction(labels, result.views, result.kept, result.presence))
    return predictions


def pruner_recall(
    kept: torch.Tensor,
    target: torch.Tensor,
    ignore_value: int,
    prompt_to_label: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float | None:
    """Share of the labels present in `target` [H, W] that the kept prompts `kept` [C] bool can produce
    (through `prompt_to_label`: on PAS-20b any kept context prompt keeps the background label).
    None for an image without labelled pixels."""
    present = _present_labels(target, ignore_value)
    if present is None:
        return None
    return _share_kept(kept.cpu(), present, _label_of_prompt(len(kept), prompt_to_label))


def recall_at_k(
    presence: torch.Tensor,
    ks: Sequence[int],
    target: torch.Tensor,
    ignore_value: int,
    prompt_to_label: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[int, float] | None:
    """presence [V, C] per-view class-presence scores -> {K: the pruner's recall had it kept each view's
    K best classes} (K above C keeps all C); None for an image without labelled pixels. Ties are broken
    as the pruner breaks them (`topk`), so K = head.top_k gives `pruner_recall` of the kept classes."""
    present = _present_labels(target, ignore_value)
    if present is None:
        return None
    num_classes = presence.shape[1]
    label_of_prompt = _label_of_prompt(num_classes, prompt_to_label)
    recalls = {}
    for k in ks:
        kept = torch.zeros(num_classes, dtype=torch.bool)
        # on the scores' own device, as the pruner ranked them: duplicate class names tie exactly
        kept[presence.topk(min(k, num_classes), dim=1).indices.reshape(-1).cpu()] = True
        recalls[k] = _share_kept(kept, present, label_of_prompt)
    return recalls


def _present_labels(target: torch.Tensor, ignore_value: int) -> torch.Tensor | None:
    """[P] the label indices `target` [H, W] holds, on the CPU; None when no pixel is labelled."""
    present = torch.unique(target[target != ignore_value]).cpu()
    return present if present.numel() else None


def _label_of_prompt(num_prompts: int, prompt_to_label: Callable[[torch.Tensor], torch.Tensor] | None):
    """[C] the label each prompt index produces."""
    prompts = torch.arange(num_prompts)
    return prompts if prompt_to_label is None else prompt_to_label(prompts)


def _share_kept(kept: torch.Tensor, present: torch.Tensor, label_of_prompt: torch.Tensor) -> float:
    """kept [C] bool over prompts, present [P] label indices -> the share of `present` some kept prompt
    produces (an index per call, where a set intersection would sort)."""
    size = max(int(label_of_prompt.max()), int(present.max())) + 1
    producible = torch.zeros(size, dtype=torch.bool)
    producible[label_of_prompt[kept]] = True
    return float(producible[present].double().mean())


def resized_argmax(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """scores [C, h, w] -> argmax over C of the scores resized bilinearly to `size`: [H, W] int64.
    Resizes a chunk of classes at a time, so 847 classes at full size never sit in memory at once; ties go
    to the lowest index, as with a plain argmax."""
    best_score = best_index = None
    for start in range(0, scores.shape[0], ARGMAX_CLASS_CHUNK):
        chunk = scores[None, start : start + ARGMAX_CLASS_CHUNK]  # [1, c, h, w]
        chunk = F.interpolate(chunk, size=tuple(size), mode="bilinear", align_corners=False)[0]  # [c, H, W]
        score, index = chunk.max(dim=0)
        index = index + start
        if best_score is None:
            best_score, best_index = score, index
        else:
            better = score > best_score
            best_score = torch.where(better, score, best_score)
            best_index = torch.where(better, index, best_index)
    return best_index


def _carried(
    output, views: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The model's output on one image's views [V, 3, s, s'] -> (logits resized to the views' size
    [V, C', s, s'] of the classes carried on, those classes [C'] (None: all C), [C] bool kept by any view
    (None: the model reports no pruning), the pruner's presence scores [V, C] fp32 (None: none reported))."""
    num_views = views.shape[0]
    if hasattr(output, "kept_logits_at_input"):
        logits, classes, kept = _union_of_kept(output, num_views, num_classes)
    else:
        logits, classes, kept = _dense(output, num_views, num_classes)
    if tuple(logits.shape[-2:]) != tuple(views.shape[-2:]):
        logits = F.interpolate(logits.float(), size=views.shape[-2:], mode="bilinear", align_corners=False)
    presence = getattr(output, "presence_logits", None)
    if presence is not None and tuple(presence.shape) != (num_views, num_classes):
        raise ValueError(f"model presence scores {tuple(presence.shape)}: expected [{num_views}, {num_classes}]")
    return logits.float(), classes, kept, None if presence is None else presence.float()


def _union_of_kept(output, num_views: int, num_classes: int):
    """A sparse output (`SegmenterOutput`) -> ([V, C', H, W] the union of the views' kept classes, a class a
    view did not keep at its pruned logit; classes [C']; kept [C] bool). O(C' x H x W), never C."""
    per_view = output.kept_logits_at_input()  # [V, K, H, W]
    kept_indices = output.kept  # [V, K]
    shapes_agree = per_view.dim() == 4 and tuple(per_view.shape[:2]) == tuple(kept_indices.shape)
    if not shapes_agree or len(kept_indices) != num_views:
        raise ValueError(f"model kept logits {tuple(per_view.shape)} and kept classes {tuple(kept_indices.shape)}: "
                         f"expected [{num_views}, K, h, w] and [{num_views}, K]")
    kept = torch.zeros(num_classes, dtype=torch.bool, device=per_view.device)
    kept[kept_indices.reshape(-1)] = True
    classes = kept.nonzero()[:, 0]  # [C'] ascending
    if kept_indices.shape[1] == len(classes) and bool((kept_indices == classes).all()):
        return per_view, classes, kept  # every view kept the same classes (no pruning, or one view)
    position = torch.full((num_classes,), -1, dtype=torch.long, device=per_view.device)
    position[classes] = torch.arange(len(classes), device=per_view.device)
    union = per_view.new_full((num_views, len(classes), *per_view.shape[-2:]), output.pruned_logit)
    union.scatter_(1, position[kept_indices][:, :, None, None].expand_as(per_view), per_view)
    return union, classes, kept


def _dense(output, num_views: int, num_classes: int):
    """A model reporting full-vocabulary `.logits` [V, C, h, w] (and optionally `.kept` [V, K]) -> the
    same triple as `_union_of_kept`, the columns of the kept classes taken from the dense tensor."""
    logits = output.logits
    if logits.dim() != 4 or tuple(logits.shape[:2]) != (num_views, num_classes):
        raise ValueError(
            f"model logits {tuple(logits.shape)}: expected [{num_views}, {num_classes}, h, w] for "
            f"{num_views} views and a text bank of {num_classes} classes"
        )
    kept_indices = getattr(output, "kept", None)  # [V, K]
    if kept_indices is None:
        return logits, None, None
    kept = torch.zeros(num_classes, dtype=torch.bool, device=logits.device)
    kept[kept_indices.reshape(-1)] = True
    classes = kept.nonzero()[:, 0]  # [C'] ascending
    return logits[:, classes], classes, kept  # [V, C', h', w']


def model_views(image: torch.Tensor, settings: InferenceSettings) -> torch.Tensor:
    """image [3, h, w] -> the views the model sees, [V, 3, h', w']: the padded image (whole mode), or the
    2 x 2 windows of the squashed square followed by the global view (sliding mode). FLOP counting uses
    this too, so it counts exactly what evaluation runs."""
    if settings.mode == "whole":
        _, height, width = image.shape
        divisor = settings.size_divisor
        pad_bottom, pad_right = -height % divisor, -width % divisor
        return F.pad(image[None], (0, pad_right, 0, pad_bottom), value=0.0)  # [1, 3, h+, w+]
    window, stride = settings.window, settings.stride
    side = window + stride
    square = F.interpolate(image[None], size=(side, side), mode="bilinear", align_corners=False)  # [1,3,S,S]
    windows = [square[:, :, top : top + window, left : left + window] for top, left in _offsets(stride)]
    global_view = F.interpolate(image[None], size=(window, window), mode="bilinear", align_corners=False)
    return torch.cat([*windows, global_view])  # [5, 3, window, window]


def _offsets(stride: int) -> list[tuple[int, int]]:
    return [(top, left) for top in (0, stride) for left in (0, stride)]


def _whole_crop(holder: list, size: tuple[int, int], settings: InferenceSettings) -> Inference:
    """[`_carried` of the padded image, logits [1, C', h+, w+]] -> its probabilities cropped to the image's
    `size` (h, w): [C', h, w]."""
    logits, classes, kept, presence = holder.pop()
    height, width = size
    probabilities = class_probabilities(logits[:, :, :height, :width], settings.seg_loss)[0]  # [C', h, w]
    return Inference(probabilities, 1, kept, classes, presence)


def _sliding_merge(holder: list, settings: InferenceSettings) -> Inference:
    """[`_carried` of the 2 x 2 windows and the global view, logits [5, C', window, window]] -> the merged
    probabilities [C', S, S]."""
    logits, classes, kept, presence = holder.pop()
    window, stride = settings.window, settings.stride
    side = window + stride
    offsets = _offsets(stride)
    probabilities = class_probabilities(logits, settings.seg_loss)
    del logits  # without pruning, 847 classes at 384 x 384 are 2.5 GB

    summed = probabilities.new_zeros(probabilities.shape[1], side, side)  # [C', S, S]
    covered = probabilities.new_zeros(1, side, side)  # windows covering each pixel: 1, 2 or 4
    for (top, left), window_probabilities in zip(offsets, probabilities[:-1], strict=True):
        summed[:, top : top + window, left : left + window] += window_probabilities
        covered[:, top : top + window, left : left + window] += 1
    global_probabilities = F.interpolate(
        probabilities[-1:], size=(side, side), mode="bilinear", align_corners=False
    )[0]  # [C', S, S]
    merged = summed.div_(covered).add_(global_probabilities).div_(2)  # in place: [C', S, S] can be large
    return Inference(merged, len(probabilities), kept, classes, presence)
