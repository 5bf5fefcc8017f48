"""Pre-training the offline profile's CLIP (`experiments.pretrain`, `dcpclip.engine.pretrain`): the export
is what the segmentation runs load, reruns skip, a lost export is restored without training, a run of
another config is discarded and retrained, and the weights' identity reaches the training fingerprint."""

import dataclasses
import json

import pytest
import torch

from dcpclip import paths
from dcpclip.config_schema import ConfigError
from dcpclip.engine.checkpoint import load_checkpoint
from dcpclip.engine.pretrain import pretrain_clip, pretrain_status, sha256_of
from dcpclip.engine.trainer import StaleRunWarning
from dcpclip.model.backbone import build_backbone
from experiments import fetch, prepare, pretrain
from experiments.compose import compose_config

STEPS = 6


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> list[str]:
    """Overrides of a prepared synthetic COCO-Stuff of 48 images."""
    root = tmp_path_factory.mktemp("data")
    overrides = [f"data.raw_root={root}/raw",
                 f"data.root={root}/prepared", "data.synthetic.train_images=48"]
    assert fetch.main([*overrides, "--datasets", "coco_stuff"]) == 0
    assert prepare.main([*overrides, "--datasets", "coco_stuff"]) == 0
    return overrides


def quick(data: list[str], folder) -> list[str]:
    return [*data, f"pretrain.dir={folder}", f"pretrain.train.iterations={STEPS}", "pretrain.train.batch_size=4",
            "pretrain.train.checkpoint_every=3", "pretrain.train.log_every=1", "pretrain.train.threads=0"]


def test_the_export_is_the_trained_clip_and_reruns_skip(data, tmp_path, capsys):
    overrides = quick(data, tmp_path / "models")
    cfg = compose_config(overrides)
    assert cfg.backbone.pretrained == f"{tmp_path}/models/clip.pt"
    assert pretrain.main(overrides) == 0
    assert f"(trained, {STEPS} steps" in capsys.readouterr().out
    weights, record_path = tmp_path / "models" / "clip.pt", tmp_path / "models" / "clip.json"
    record = json.loads(record_path.read_text())
    assert (record["steps"], record["sha256"]) == (STEPS, sha256_of(weights))
    assert record["fingerprint"] == paths.fingerprint(paths.pretrain_identity(cfg))

    trained = load_checkpoint(paths.pretrain_run_dir(cfg))["model"]  # "backbone.clip.<name>" -> tensor
    loaded = build_backbone(cfg.backbone).clip.state_dict()  # through open_clip.create_model(pretrained=...)
    random_init = build_backbone(dataclasses.replace(cfg.backbone, pretrained=None)).clip.state_dict()
    assert set(loaded) == {name.removeprefix("backbone.clip.") for name in trained}
    assert all(torch.equal(loaded[name], trained[f"backbone.clip.{name}"]) for name in loaded)
    assert not torch.equal(loaded["visual.conv1.weight"], random_init["visual.conv1.weight"])  # it trained
    curve = paths.pretrain_run_dir(cfg) / "dvclive/plots/metrics/train/image.tsv"
    assert len(curve.read_text().splitlines()) == 1 + STEPS

    modified = weights.stat().st_mtime_ns
    assert pretrain.main(overrides) == 0
    assert "(skipped" in capsys.readouterr().out and weights.stat().st_mtime_ns == modified

    weights.unlink()  # a lost export comes back from the final checkpoint, bit for bit, without training
    assert pretrain_status(cfg) == "done"
    assert pretrain_clip(cfg, progress=False).status == "skipped"
    assert sha256_of(weights) == record["sha256"]


class StopAt:
    """A metrics sink that raises when step `stop` is logged: an interruption after that step's update."""

    def __init__(self, stop: int):
        self.stop = stop

    def start(self, step: int) -> None:
        pass

    def log(self, step, metrics) -> None:
        if step == self.stop:
            raise KeyboardInterrupt

    def close(self) -> None:
        pass


def test_an_interrupted_pretraining_resumes_to_the_same_weights(data, tmp_path):
    straight = compose_config(quick(data, tmp_path / "straight"))
    assert pretrain_clip(straight, progress=False).status == "trained"
    interrupted = compose_config(quick(data, tmp_path / "interrupted"))
    with pytest.raises(KeyboardInterrupt):
        pretrain_clip(interrupted, sink=StopAt(4), progress=False)  # the step-3 checkpoint is the last
    assert pretrain_status(interrupted) == "resumable"
    result = pretrain_clip(interrupted, progress=False)
    assert (result.status, result.start_step, result.step) == ("resumed", 3, STEPS)
    assert sha256_of(tmp_path / "interrupted" / "clip.pt") == sha256_of(tmp_path / "straight" / "clip.pt")


def test_another_pretraining_config_retrains_from_scratch_with_the_difference_named(data, tmp_path, capsys):
    overrides = quick(data, tmp_path / "models")
    assert pretrain.main(overrides) == 0
    changed = compose_config([*overrides, "pretrain.train.lr=5e-4"])
    assert pretrain_status(changed) == "mismatch"
    with pytest.warns(StaleRunWarning, match=r"pretrain.train.lr: 0.001 -> 0.0005"):
        assert pretrain.main([*overrides, "pretrain.train.lr=5e-4"]) == 0
    assert "another identity (config or code): retraining from scratch" in capsys.readouterr().out
    assert pretrain_status(changed) == "exported"
    fresh = compose_config([*quick(data, tmp_path / "fresh"), "pretrain.train.lr=5e-4"])
    assert pretrain_clip(fresh, progress=False).status == "trained"
    assert sha256_of(tmp_path / "fresh" / "clip.pt") == sha256_of(tmp_path / "models" / "clip.pt")


def test_the_pretraining_identity_reaches_the_training_fingerprint_but_not_its_folder(tmp_path):
    base = paths.training_fingerprint(compose_config([]))
    assert paths.training_fingerprint(compose_config(["pretrain.train.lr=5e-4"])) != base
    assert paths.training_fingerprint(compose_config(["pretrain.dense_loss_weight=1.0"])) != base
    assert paths.training_fingerprint(compose_config([f"pretrain.dir={tmp_path}"])) == base
    assert paths.training_fingerprint(compose_config(["pretrain=none"])) != base


def test_weights_named_elsewhere_contradict_a_pretraining():
    with pytest.raises(ConfigError, match="backbone.pretrained 'openai': with pretrain.enabled"):
        compose_config(["backbone.pretrained=openai"])
    with pytest.raises(ConfigError, match="pretrain.train.crop_size 32 != backbone.image_size 64"):
        compose_config(["pretrain.train.crop_size=32"])
    paper = compose_config(["profile=paper"])
    assert (paper.pretrain.enabled, paper.backbone.pretrained) == (False, "openai")


def test_without_a_pretraining_the_stage_notes_the_weights_it_loads(tmp_path):
    assert pretrain.main(["pretrain=none", f"pretrain.dir={tmp_path}"]) == 0
    record = json.loads((tmp_path / "clip.json").read_text())
    assert (record["pretrained_here"], record["arch"], record["pretrained"]) == (False, "dcpclip-tiny", None)
    assert not (tmp_path / "clip.pt").exists()


def test_a_missing_export_says_how_to_make_it(tmp_path):
    cfg = compose_config([f"pretrain.dir={tmp_path}"])
    with pytest.raises(FileNotFoundError, match="python -m experiments.pretrain"):
        build_backbone(cfg.backbone)
