"""Class-name lists of the synthetic datasets, with the class-count structure of the real ones
(COCO-Stuff 171, A-847 847, PC-459 459, A-150 150, PC-59 59, PAS-20 20, PAS-20b 59 prompts) and realistic
overlaps: most benchmark classes a model can meet are also COCO-Stuff training classes, so a small model
trained on the synthetic COCO-Stuff can recognise them in the synthetic benchmarks.

Mirrored structural details: PC-459 is alphabetical and holds "unknown"; PC-59 lists its classes in PC-459
id order and calls PC-459's "table" "diningtable"; PAS-20b is the 20 VOC names then the 39 other PC-59 names;
one A-150 name carries a trailing space; some A-847 names list synonyms joined by ", ".
The names are ordinary English nouns written for this project, not the published lists.
"""

from __future__ import annotations

import functools
import hashlib

VOC = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "table",
    "dog",
    "horse",
    "motorbike",
    "person",
    "potted plant",
    "sheep",
    "sofa",
    "train",
    "tv monitor",
)
OTHER_THINGS = (
    "umbrella",
    "backpack",
    "handbag",
    "suitcase",
    "kite",
    "bench",
    "clock",
    "vase",
    "book",
    "laptop",
    "keyboard",
    "cup",
    "bowl",
    "banana",
    "apple",
    "orange",
    "pizza",
    "cake",
    "bed",
    "toilet",
    "sink",
    "refrigerator",
    "oven",
    "microwave",
    "lamp",
    "pillow",
    "mirror",
    "curtain",
    "cabinet",
    "shelf",
    "door",
    "window",
    "sign",
    "traffic light",
    "truck",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "skateboard",
    "surfboard",
    "fork",
    "knife",
    "spoon",
)
STUFF = (
    "sky",
    "grass",
    "tree",
    "wall",
    "floor",
    "ceiling",
    "road",
    "sidewalk",
    "building",
    "mountain",
    "water",
    "sea",
    "river",
    "sand",
    "snow",
    "rock",
    "fence",
    "bridge",
    "house",
    "roof",
    "ground",
    "dirt",
    "gravel",
    "bush",
    "flower",
    "leaves",
    "carpet",
    "rug",
    "stairs",
    "railing",
    "platform",
    "playingfield",
    "mud",
    "fog",
    "clouds",
    "wood",
    "stone",
    "brick",
    "tile",
    "metal",
    "plastic",
    "paper",
    "cardboard",
    "cloth",
    "textile",
    "food",
    "fruit",
    "vegetable",
    "salad",
    "straw",
    "moss",
    "hill",
    "field",
    "tent",
    "pavement",
    "track",
    "light",
    "counter",
    "desk",
    "napkin",
)
MATERIALS = (
    "wooden",
    "metal",
    "glass",
    "plastic",
    "stone",
    "paper",
    "leather",
    "woolen",
    "golden",
    "striped",
    "painted",
    "broken",
    "folding",
    "antique",
    "rusty",
    "tiled",
)
SYNONYMS = {  # A-847 entries that list synonyms
    "sofa": "sofa, couch, lounge",
    "car": "car, auto, automobile",
    "person": "person, individual, someone",
    "road": "road, route",
    "floor": "floor, flooring",
    "rug": "rug, carpet, carpeting",
    "rock": "rock, stone",
    "tv monitor": "tv monitor, television, telly",
}
PC59_CONTEXT = (  # the 39 PC-59 classes that are not VOC classes
    "bed",
    "book",
    "building",
    "cabinet",
    "ceiling",
    "cloth",
    "cup",
    "curtain",
    "door",
    "fence",
    "floor",
    "flower",
    "food",
    "grass",
    "ground",
    "keyboard",
    "light",
    "mountain",
    "platform",
    "road",
    "rock",
    "shelf",
    "sidewalk",
    "sign",
    "sky",
    "snow",
    "track",
    "tree",
    "truck",
    "wall",
    "water",
    "window",
    "wood",
    "bench",
    "mirror",
    "clock",
    "bush",
    "stairs",
    "sand",
)
PC59_ALIASES = {"table": "diningtable"}  # PC-459 name -> PC-59 name


def _stable_order(names) -> list[str]:
    """A fixed pseudo-random order (by each name's sha256), independent of any seed."""
    return sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())


@functools.cache
def vocabularies() -> dict[str, tuple[str, ...]]:
    """Prompt-name lists by pinned file stem: coco, ade150, ade847, pc459, pc59, voc20, voc20b."""
    base = VOC + OTHER_THINGS + STUFF
    coco = base + tuple(f"{s}-other" for s in STUFF[: 171 - len(base)])
    pool = [n for n in _stable_order(f"{m} {b}" for m in MATERIALS for b in base) if n not in coco]

    pc_named = {*VOC, *PC59_CONTEXT, "unknown"}
    pc_others = _stable_order(set(coco) - pc_named) + pool[:400]
    pc459 = tuple(sorted(pc_named | set(pc_others[: 459 - len(pc_named)])))
    pc59_full = [n for n in pc459 if n in VOC or n in PC59_CONTEXT]
    pc59 = tuple(PC59_ALIASES.get(n, n) for n in pc59_full)
    voc20b = VOC + tuple(PC59_ALIASES.get(n, n) for n in pc59_full if n not in VOC)

    ade150 = list(_stable_order(coco)[:70]) + pool[400:480]
    ade150[7] += " "  # like the published list, one name carries a trailing space
    ade847 = tuple(SYNONYMS.get(n.strip(), n.strip()) for n in ade150) + tuple(pool[480 : 480 + 697])
    lists = {
        "coco": coco,
        "ade150": tuple(ade150),
        "ade847": ade847,
        "pc459": pc459,
        "pc59": pc59,
        "voc20": VOC,
        "voc20b": voc20b,
    }
    sizes = {"coco": 171, "ade150": 150, "ade847": 847, "pc459": 459, "pc59": 59, "voc20": 20, "voc20b": 59}
    for stem, names in lists.items():
        assert len(names) == sizes[stem] and len(set(names)) == len(names), (stem, len(names))
    return lists


def visual_key(name: str) -> str:
    """The part of a name that fixes its look: the first synonym, without surrounding spaces."""
    return name.split(",")[0].strip()
