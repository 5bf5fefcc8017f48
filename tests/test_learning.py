"""The offline profile learns: the `full` variant trained with the offline defaults (synthetic data
through the real fetch and prepare stages, the tiny CLIP pre-trained here on the synthetic training set,
`experiments/conf/train/offline.yaml`) segments the synthetic benchmarks clearly better than chance,
judged by the evaluator the tables use, against a constant and a uniformly random predictor scored here on
the same images; its pruner keeps the ground-truth classes far more often than a random choice of K
would; and its training losses fell.

Measured on this machine (seed 0, offline defaults, 8 images per benchmark): full mIoU PC-59 11.18 /
PAS-20 18.17; uniformly random predictor 1.25 / 2.72; best constant predictor 0.76 / 0.77; pruner recall
0.58 / 0.90 against 8/59 = 0.14 / 8/20 = 0.40 for a random choice; segmentation loss (over the kept
classes) 1.72 -> 0.90 and presence BCE 0.157 -> 0.125 (means of the first and last three logged windows;
the BCE starts low because the calibration starts at the prior presence rate).
Without the pre-training the same run stayed at chance (the random-init CLIP recognises nothing, so the
pruner has nothing to learn from).
"""

import pytest
import torch

from dcpclip import paths
from dcpclip.data.datasets import evaluation_dataset
from dcpclip.data.specs import SPECS
from dcpclip.engine.evaluator import SemSegEvaluator
from dcpclip.records import load_record
from experiments import evaluate, fetch, prepare, pretrain, train
from experiments.compose import compose_config

VARIANT = "full"
BENCHMARKS = ("pc59", "pas20")
MARGIN_OVER_CHANCE = 3.0  # measured margins: 8.9x (PC-59) and 6.7x (PAS-20) over the stronger baseline
RECALL_OVER_RANDOM = 1.8  # measured: 4.2x (PC-59) and 2.3x (PAS-20) the recall of a random choice of K



def chance_miou(cfg, benchmark: str) -> dict[str, float]:
    """mIoU of a uniformly random predictor (seeded) and of the best constant predictor on the images the
    evaluation stage scores, through the same evaluator."""
    spec = SPECS[benchmark]
    dataset = evaluation_dataset(cfg.data.root, spec, cfg.eval.short_side, cfg.eval.max_long_side)
    labels = [dataset[i].label for i in range(len(dataset))]  # [H, W] at the original size
    generator = torch.Generator().manual_seed(0)
    random = SemSegEvaluator(spec.num_classes, spec.ignore_value)
    for label in labels:
        random.process(torch.randint(0, spec.num_classes, label.shape, generator=generator), label)
    constants = []
    for cls in range(spec.num_classes):
        constant = SemSegEvaluator(spec.num_classes, spec.ignore_value)
        for label in labels:
            constant.process(torch.full_like(label, cls), label)
        constants.append(constant.evaluate()["mIoU"])
    return {"random": random.evaluate()["mIoU"], "constant": max(constants)}


@pytest.mark.slow
def test_the_offline_profile_beats_chance_on_the_synthetic_benchmarks(tmp_path, one_torch_thread):
    overrides = [f"data.raw_root={tmp_path}/raw", f"data.root={tmp_path}/prepared", f"runs_dir={tmp_path}/runs",
                 f"results_dir={tmp_path}/results", f"cache_dir={tmp_path}/cache", f"pretrain.dir={tmp_path}/models",
                 f"data.benchmarks=[{','.join(BENCHMARKS)}]", f"variant={VARIANT}"]
    assert fetch.main(overrides) == 0 and prepare.main(overrides) == 0
    assert pretrain.main(overrides) == 0
    assert train.main(overrides) == 0
    assert evaluate.main(overrides) == 0
    cfg = compose_config(overrides)

    curves = paths.run_dir(cfg) / "dvclive/plots/metrics/train"
    for term, ratio in (("seg", 0.7), ("prune", 0.9)):  # measured last/first 0.52 and 0.80
        losses = [float(line.split("\t")[1]) for line in (curves / f"{term}.tsv").read_text().splitlines()[1:]]
        assert len(losses) == cfg.train.iterations // cfg.train.log_every
        first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
        assert last < ratio * first, (term, first, last)

    for benchmark in BENCHMARKS:
        record = load_record(paths.eval_record_path(cfg, benchmark))
        chance = chance_miou(cfg, benchmark)
        assert record.metrics.mIoU > MARGIN_OVER_CHANCE * max(chance.values()), (benchmark, record.metrics, chance)
        random_recall = cfg.head.top_k / SPECS[benchmark].num_classes
        assert record.pruner_recall > RECALL_OVER_RANDOM * random_recall, (benchmark, record.pruner_recall)
