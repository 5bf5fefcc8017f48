"""Run identity and every output path, as pure functions of the config (and, for identities, of the code
each stage runs: `dcpclip.code_digest`). `dvc.yaml` mirrors these
folders (a test proves it); nothing else in the project builds a result path by hand.

Layout (profile first, so the offline and paper results never mix; then the open_clip architecture, so
ViT-B/16 and ViT-L/14 runs of the paper profile never overwrite each other):
    runs/<profile>/<arch>/<variant>/seed<k>/                        checkpoints and training logs of one run
    results/eval/<profile>/<arch>/<variant>/seed<k>/<benchmark>.json    one evaluation record
    results/flops/<profile>/<arch>/<variant>/<benchmark>.json           one FLOP record
    results/flops/paper-arch/<arch>/<variant>/<benchmark>.json          paper architecture, counted offline
    results/train_step/<profile or paper-arch>/<arch>/<variant>.json    one training step's cost, same profiles
    models/<profile>/<arch>/clip.pt, clip.json, run/                    CLIP pre-trained here (`pretrain.dir`)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dcpclip.code_digest import code_identity
from dcpclip.config import ExperimentConfig
from dcpclip.config_schema import to_dict
from dcpclip.model.config import PRUNER_SETTINGS, HeadConfig, has_pruner
from dcpclip.profiles import PAPER_ARCH_PROFILE


def fingerprint(obj) -> str:
    """Short sha256 of a config (dataclass or plain containers), stable across runs and machines."""
    canonical = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def data_identity(cfg: ExperimentConfig) -> dict:
    """The training data's identity (where it lives excluded)."""
    return {k: v for k, v in to_dict(cfg.data).items() if k in ("source", "train_dataset", "synthetic")}


# the entry point of each stage whose import closure is the code of that stage's identity
PREPARE_CODE, PRETRAIN_CODE, TRAIN_CODE, EVAL_CODE, FLOPS_CODE = (
    "experiments.prepare", "experiments.pretrain", "experiments.train", "experiments.evaluate", "experiments.flops")


def pretrain_identity(cfg: ExperimentConfig) -> dict:
    """Everything that changes the pre-trained CLIP weights (`dcpclip.engine.pretrain`), its code included."""
    kept = ("arch", "init_seed", "quick_gelu", "image_size")
    backbone = {k: v for k, v in to_dict(cfg.backbone).items() if k in kept}
    pretrain = to_dict(cfg.pretrain)
    pretrain["train"] = {k: v for k, v in pretrain["train"].items() if k not in ("log_every", "threads")}
    del pretrain["dir"]
    return {"backbone": backbone, "text": to_dict(cfg.text), "data": data_identity(cfg), "pretrain": pretrain,
            "code": code_identity(PRETRAIN_CODE)}


def pretrain_run_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.pretrain.dir) / "run"


def pretrained_clip_record_path(cfg: ExperimentConfig) -> Path:
    return Path(cfg.pretrain.dir) / "clip.json"


def head_identity(head: HeadConfig) -> dict:
    """The head settings the model built from `head` reads: all of them, less the pruner's where there is
    no pruner, so a change of K redoes no run, evaluation or count of `no_prune` or `zero_shot`."""
    settings = to_dict(head)
    if not has_pruner(head):
        for key in PRUNER_SETTINGS:
            del settings[key]
    return settings


def training_identity(cfg: ExperimentConfig) -> dict:
    """Everything that changes the trained weights, and nothing else (eval and paths excluded): the config
    and the code the train stage runs. Weights pre-trained here enter by their pre-training's identity, not
    by the file's path."""
    backbone = to_dict(cfg.backbone)
    if cfg.pretrain.enabled:
        backbone["pretrained"] = {"pretrained_here": pretrain_identity(cfg)}
    return {
        "backbone": backbone,
        "text": to_dict(cfg.text),
        "head": head_identity(cfg.head),
        "data": data_identity(cfg),
        "train": {k: v for k, v in to_dict(cfg.train).items() if k not in ("log_every", "threads")},
        "seed": cfg.seed,
        "code": code_identity(TRAIN_CODE),
    }


def training_fingerprint(cfg: ExperimentConfig) -> str:
    return fingerprint(training_identity(cfg))


def run_name(cfg: ExperimentConfig) -> Path:
    return Path(cfg.profile) / cfg.backbone.arch / cfg.variant / f"seed{cfg.seed}"


def run_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.runs_dir) / run_name(cfg)


def eval_record_path(cfg: ExperimentConfig, benchmark: str) -> Path:
    return Path(cfg.results_dir) / "eval" / run_name(cfg) / f"{benchmark}.json"


def flops_record_path(cfg: ExperimentConfig, benchmark: str) -> Path:
    return Path(cfg.results_dir) / "flops" / cfg.profile / cfg.backbone.arch / cfg.variant / f"{benchmark}.json"


def paper_arch_flops_record_path(cfg: ExperimentConfig, benchmark: str) -> Path:
    """FLOPs of a paper architecture (`cfg` composed with it) counted by the offline pipeline at the
    protocol's resolution: its own profile folder, one folder per architecture (`dcpclip.profiles`)."""
    return Path(cfg.results_dir) / "flops" / PAPER_ARCH_PROFILE / cfg.backbone.arch / cfg.variant / f"{benchmark}.json"


def train_step_record_path(cfg: ExperimentConfig, profile: str) -> Path:
    """The cost of one training step, beside the FLOP records of `profile` (cfg's own or PAPER_ARCH_PROFILE)."""
    return Path(cfg.results_dir) / "train_step" / profile / cfg.backbone.arch / f"{cfg.variant}.json"


def text_cache_dir(cfg: ExperimentConfig) -> Path:
    return Path(cfg.cache_dir) / "text_banks"


def evaluation_fingerprint(cfg: ExperimentConfig) -> str:
    """Identity of an evaluation: the trained weights' identity plus everything inference reads and the
    code the evaluate stage runs."""
    return fingerprint({"training": training_identity(cfg), "eval": to_dict(cfg.eval), "text": to_dict(cfg.text),
                        "data_root": cfg.data.root, "code": code_identity(EVAL_CODE)})


def ray_storage_dir(cfg: ExperimentConfig) -> Path:
    """Where Ray Tune keeps its trial bookkeeping (on shared storage when running on a cluster): beside the
    run folders, not inside them, since the train stage's output must not change under later stages."""
    return Path(cfg.runs_dir).parent / "ray_results" / cfg.profile
