"""What each dataset IS for the protocol (`docs/protocol.md`): classes, ignore value, label
file type, expected image counts, prompt-name file. Where its files come FROM lives in the download
registry (`dcpclip.data.sources`).

Prepared layout, shared by preparation, datasets, evaluation and prediction:
    <data.root>/<key>/classes.json            prompt names (the pinned CAT-Seg list), one per prompt
    <data.root>/<key>/manifest.json           counts, classes, ignore value, label histogram, source hashes
    <data.root>/<key>/images/<split>/<id>.jpg
    <data.root>/<key>/labels/<split>/<id>.png (uint8) or .tif (uint16)
"""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    key: str
    title: str  # the name used in the field's tables
    split: str  # the split that is trained on (train) or evaluated (val)
    num_classes: int  # label classes (what the mIoU is over)
    num_prompts: int  # class names given to the model (differs from num_classes for PAS-20b only)
    names_file: str  # pinned CAT-Seg list under datasets/ at the pinned commit
    ignore_value: int
    label_format: Literal["png8", "tif16"]
    expected_images: tuple[int, ...]  # accepted counts of the real split (PC-59 has a known 5104/5105 split)
    # PAS-20b: prompt indices >= this map to the background label (= this index); None elsewhere
    background_from_prompt: int | None = None

    def prompt_to_label(self, prompt_index):
        """Map predicted prompt indices (int or integer tensor/array) to label indices."""
        if self.background_from_prompt is None:
            return prompt_index
        bg = self.background_from_prompt
        return prompt_index.clip(max=bg) if hasattr(prompt_index, "clip") else min(prompt_index, bg)


SPECS: dict[str, DatasetSpec] = {
    s.key: s
    for s in (
        DatasetSpec("coco_stuff", "COCO-Stuff", "train", 171, 171, "coco.json", 255, "png8", (118287,)),
        DatasetSpec("a847", "A-847", "val", 847, 847, "ade847.json", 65535, "tif16", (2000,)),
        DatasetSpec("pc459", "PC-459", "val", 459, 459, "pc459.json", 459, "tif16", (5104,)),
        DatasetSpec("a150", "A-150", "val", 150, 150, "ade150.json", 255, "png8", (2000,)),
        DatasetSpec("pc59", "PC-59", "val", 59, 59, "pc59.json", 255, "png8", (5104, 5105)),
        DatasetSpec("pas20", "PAS-20", "val", 20, 20, "voc20.json", 255, "png8", (1449,)),
        DatasetSpec("pas20b", "PAS-20b", "val", 21, 59, "voc20b.json", 255, "png8", (1449,), 20),
    )
}

# COCO-Stuff's raw label ids, shared by its preparation and the synthetic data written in its format
NUM_RAW_IDS = 182
UNUSED_THING_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)  # 0-based; COCO ids 12, 26, 29, ... 91
