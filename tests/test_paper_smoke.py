"""The paper profile at its own geometry (`experiments.paper_smoke`, counts shrunk, shapes not): ViT-B/16
trained at crop 384 with the recipe's optimiser groups and schedule, evaluated in 640 sliding windows on
every benchmark's whole vocabulary, counted, used by `predict`, and reported."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dcpclip.data.specs import SPECS
from experiments.compose import compose_config
from experiments.paper_smoke import SHRINK

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_paper_profile_runs_every_stage_at_the_paper_geometry(tmp_path):
    summary = tmp_path / "smoke.json"
    done = subprocess.run([sys.executable, "-m", "experiments.paper_smoke", "--workdir", str(tmp_path),
                           "--variants", "full", "--summary", str(summary)], cwd=REPO, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(done.stdout)
    smoke = json.loads(summary.read_text())
    assert [s["name"] for s in smoke["stages"]] == ["fetch", "prepare", "train full", "evaluate full", "flops full",
                                                    "predict", "aggregate", "report"]
    cfg = compose_config([*SHRINK, "variant=full"])
    assert (cfg.backbone.arch, cfg.backbone.image_size, cfg.train.crop_size, cfg.train.batch_size) == \
        ("ViT-B-16", 384, 384, 4)

    run = tmp_path / "runs" / "paper" / "ViT-B-16" / "full" / "seed0"
    assert json.loads((run / "done").read_text())["step"] == 2
    lr = {group: [float(row["lr/" + group] if "lr/" + group in row else row[group]) for row in
                  csv.DictReader((run / "dvclive" / "plots" / "metrics" / "lr" / f"{group}.tsv").open(),
                                 delimiter="\t")] for group in ("head", "clip")}
    assert lr["head"][-1] < cfg.train.lr  # the cosine schedule has moved
    assert lr["clip"][-1] == pytest.approx(cfg.train.clip_lr_multiplier * lr["head"][-1])

    for key, spec in SPECS.items():
        if key == cfg.data.train_dataset:
            continue
        record = json.loads((tmp_path / "results" / "eval" / "paper" / "ViT-B-16" / "full" / "seed0" /
                             f"{key}.json").read_text())
        assert record["num_prompts"] == spec.num_prompts and record["num_images"] == 1
        assert record["inference"] == {"mode": "sliding", "short_side": 640, "window": 384, "stride": 256,
                                       "views": 5}
        flops = json.loads((tmp_path / "results" / "flops" / "paper" / "ViT-B-16" / "full" /
                            f"{key}.json").read_text())
        assert (flops["resolution"], flops["views"], flops["num_classes"]) == ([384, 384], 5, spec.num_prompts)
        assert flops["gmacs_mean"] > 5 * 55  # five ViT-B/16 passes at 384 (55 GMACs each) and the head
    assert any((tmp_path / "predictions").iterdir())
    report = (tmp_path / "reports" / "README.md").read_text()
    assert "| `full`" in report and "A-847" in report
    assert "NOT comparable with the published ones:** 6 of 6 evaluations ran on synthetic data" in report
