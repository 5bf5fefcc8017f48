"""dcpclip: the DCP-CLIP model, its ablations, and the OVSS benchmark protocol, as a plain library.

The library takes typed dataclass configs and plain arguments; it never imports Hydra, Ray or DVC
(those live in `experiments/` and `ablations/`). The public API, by name:

    experiment_config(dict) -> ExperimentConfig    validate a composed config (experiments.compose composes YAML)
    variant_names(), variant_of(head)              the ablation registry; a head's variant name
    build_model(backbone_cfg, head_cfg)            the segmenter the flags describe
    run_model(backbone_cfg, head_cfg, seed)        ... as a run's checkpoint holds it
    SemSegEvaluator                                mIoU and the rest with detectron2's semantics
    evaluate_benchmark(model, cfg, spec, ...)      one benchmark split -> EvalRecord, SampleSet
    count_gmacs(model, views, text_bank)           fvcore multiply-adds of one forward
    count_records(cfg, profile, record_path, ...)  the FLOP and train-step records of a config

They are imported on first use (PEP 562), so `import dcpclip.paths` does not load torch, and a stage's
code identity (`dcpclip.code_digest`, which follows import statements) holds only what it imports.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "ExperimentConfig": "dcpclip.config",
    "experiment_config": "dcpclip.config",
    "variant_names": "dcpclip.model.variants",
    "variant_of": "dcpclip.model.variants",
    "build_model": "dcpclip.model.build",
    "run_model": "dcpclip.model.build",
    "SemSegEvaluator": "dcpclip.engine.evaluator",
    "evaluate_benchmark": "dcpclip.engine.evaluate",
    "count_gmacs": "dcpclip.flops",
    "count_records": "dcpclip.flop_records",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'dcpclip' has no attribute {name!r} (public API: {', '.join(_API)})")
    return getattr(importlib.import_module(_API[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
