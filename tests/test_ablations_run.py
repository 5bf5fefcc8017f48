"""`python ablations/run.py --variant V`: one variant end to end (data, CLIP pre-training, training,
evaluation, FLOPs) into the layout the report reads, on a shortened offline profile."""

import json
import subprocess
import sys
from pathlib import Path

from dcpclip import paths
from dcpclip.engine.checkpoint import run_status
from experiments.compose import compose_config

REPO = Path(__file__).resolve().parents[1]


def test_one_variant_runs_end_to_end_into_the_pipeline_layout(tmp_path):
    overrides = [f"data.raw_root={tmp_path}/raw",
                 f"data.root={tmp_path}/prepared", f"runs_dir={tmp_path}/runs",
                 f"results_dir={tmp_path}/results", f"cache_dir={tmp_path}/cache", f"pretrain.dir={tmp_path}/models",
                 "data.synthetic.train_images=48", "pretrain.train.iterations=4", "pretrain.train.batch_size=4",
                 "train.iterations=4", "train.batch_size=2", "count_paper_arch=null"]
    command = [sys.executable, "ablations/run.py", "--variant", "no_dual", "--benchmarks", "pas20", *overrides]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    cfg = compose_config([*overrides, "variant=no_dual", "data.benchmarks=[pas20]"])
    assert json.loads(paths.pretrained_clip_record_path(cfg).read_text())["steps"] == 4
    assert run_status(paths.run_dir(cfg), paths.training_fingerprint(cfg)) == "done"
    record = json.loads(paths.eval_record_path(cfg, "pas20").read_text())
    assert (record["variant"], record["benchmark"], record["num_images"]) == ("no_dual", "pas20", 8)
    assert paths.flops_record_path(cfg, "pas20").is_file()
    assert "evaluate no_dual seed0 pas20: mIoU" in done.stdout
