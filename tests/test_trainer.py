"""The training loop's contracts: CAT-Seg's optimiser groups and schedule, gradient clipping, the text bank
rule, exact resume after a hard kill, a changed config's stale run discarded and retrained, skipping a
finished run, learning.

Most contracts are exercised on a small test double (a tiny segmenter and an in-memory dataset, defined
here) so they take seconds; the end-to-end tests run `experiments/train.py` on the tiny DCP-CLIP and a
prepared COCO-Stuff-format training set written by a fixture."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.data import Dataset

from dcpclip.config_schema import to_dict
from dcpclip.data.specs import SPECS
from dcpclip.engine.checkpoint import (
    CHECKPOINT_NAME,
    checkpoint_identity,
    exclusive_run,
    load_checkpoint,
    run_status,
)
from dcpclip.engine.config import TrainConfig
from dcpclip.engine.optim import build_optimizer, cosine_factor
from dcpclip.engine.sampler import SampleKey, StepBatchSampler
from dcpclip.engine.trainer import StaleRunWarning, fit
from dcpclip.paths import fingerprint, run_dir, training_fingerprint
from experiments.compose import compose_config
from experiments.live_metrics import DVCLiveSink
from experiments.train import main

REPO = Path(__file__).resolve().parent.parent
NUM_CLASSES = 3
SIDE = 8


# ---- the test double ----------------------------------------------------------------------------------
class TinyBackbone(nn.Module):
    """Stands in for the CLIP backbone: an image part, a frozen part and a text part."""

    def __init__(self):
        super().__init__()
        self.image = nn.Conv2d(3, 8, 3, padding=1)
        self.frozen = nn.Conv2d(8, 8, 1)
        self.frozen.requires_grad_(False)
        self.text = nn.Embedding(NUM_CLASSES, 8)


class TinySegmenter(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = TinyBackbone()
        self.norm = nn.GroupNorm(2, 8)
        self.head = nn.Conv2d(8, 8, 1)
        self.dropout = nn.Dropout(0.1)  # draws from the global torch RNG: resume must restore it
        self.logit_scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, images, text_bank, targets):
        features = self.backbone.frozen(self.backbone.image(images))  # [B, 8, H, W]
        features = self.dropout(self.head(F.relu(self.norm(features))))
        logits = self.logit_scale * torch.einsum("bdhw,cd->bchw", F.normalize(features, dim=1), text_bank)
        return types.SimpleNamespace(logits=logits)  # [B, C, H, W]


def tiny_losses(output, targets):
    ce = F.cross_entropy(output.logits, targets, ignore_index=255)
    magnitude = 1e-3 * output.logits.float().pow(2).mean()
    return {"total": ce + magnitude, "ce": ce, "magnitude": magnitude}


def text_bank_of(model):
    return lambda: F.normalize(model.backbone.text.weight, dim=-1)  # [C, 8]


class PatternDataset(Dataset):
    """Each image is a noisy class colour pattern; flips and noise are drawn from (seed, index, epoch).

    `stall_after` samples, the dataset writes `stall_marker` and hangs (the process is then killed)."""

    def __init__(self, size: int = 10, seed: int = 0, stall_after: int | None = None, stall_marker=None):
        generator = torch.Generator().manual_seed(1234)
        self.labels = torch.randint(0, NUM_CLASSES, (size, SIDE, SIDE), generator=generator)
        self.colours = torch.rand(NUM_CLASSES, 3, generator=generator)
        self.seed = seed
        self.stall_after, self.stall_marker, self.served = stall_after, stall_marker, 0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, key: SampleKey):
        if self.stall_after is not None and self.served >= self.stall_after:
            Path(self.stall_marker).write_text("stalled")
            time.sleep(600)
        self.served += 1
        rng = np.random.default_rng((self.seed, key.index, key.epoch))
        label = self.labels[key.index]
        image = self.colours[label].permute(2, 0, 1)  # [3, S, S]
        image = image + 0.2 * torch.from_numpy(rng.standard_normal(image.shape).astype(np.float32))
        if rng.random() < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        return image, label


def small_config(**changes) -> TrainConfig:
    base = TrainConfig(iterations=8, batch_size=2, crop_size=SIDE, lr=1e-2, clip_lr_multiplier=0.1,
                       grad_clip_norm=1.0, checkpoint_every=4, log_every=1, amp=False, threads=1)
    return dataclasses.replace(base, **changes)


def identity_of(cfg: TrainConfig, seed: int) -> dict:
    return {"double": "tiny-segmenter", "train": to_dict(cfg), "seed": seed}


class RecordingSink:
    def __init__(self):
        self.rows: dict[int, dict[str, float]] = {}
        self.started_at = None

    def start(self, step):
        self.started_at = step

    def log(self, step, metrics):
        self.rows[step] = dict(metrics)

    def close(self):
        pass


def train_double(run_dir, cfg: TrainConfig, seed: int = 0, *, text_bank_trains=True, sink=None, dataset=None,
                 text_bank=None):
    torch.manual_seed(seed)  # head initialisation, as the real entry point does before building
    model = TinySegmenter()
    return model, fit(
        model, model.backbone, dataset or PatternDataset(seed=seed), text_bank or text_bank_of(model),
        tiny_losses, cfg, seed=seed, run_dir=run_dir, identity=identity_of(cfg, seed),
        text_bank_trains=text_bank_trains, sink=sink, progress=False,
    )


def killable_child(run_dir: str, stall_after_steps: int, marker: str) -> None:
    """Entry of the subprocess that is killed mid-run (DVCLive curves included)."""
    torch.set_num_threads(1)
    cfg = small_config(iterations=12)
    dataset = PatternDataset(stall_after=stall_after_steps * cfg.batch_size, stall_marker=marker)
    train_double(run_dir, cfg, dataset=dataset, sink=DVCLiveSink(Path(run_dir) / "dvclive"))


def kill_when(child: subprocess.Popen, reached, timeout_s: float, what: str) -> None:
    """SIGKILL `child` (started with stderr=PIPE) as soon as `reached()` holds; fails if it exits first or
    never gets there."""
    deadline = time.monotonic() + timeout_s
    while not reached():
        assert child.poll() is None, f"child exited early: {child.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, f"child never reached {what}"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    child.stderr.close()


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir)["model"]


# ---- sampler ------------------------------------------------------------------------------------------
def test_data_order_is_a_pure_function_of_seed_and_step():
    full = list(StepBatchSampler(7, 3, seed=5, start_step=0, stop_step=10))
    resumed = list(StepBatchSampler(7, 3, seed=5, start_step=4, stop_step=10))
    assert resumed == full[4:]
    stream = [key for batch in full for key in batch]
    for epoch in range(4):  # every complete epoch visits each sample once
        assert sorted(k.index for k in stream if k.epoch == epoch) == list(range(7))
    other_seed = list(StepBatchSampler(7, 3, seed=6, start_step=0, stop_step=10))
    assert other_seed != full
    assert [k.index for k in stream[:7]] != [k.index for k in stream[7:14]]  # epochs are reshuffled


# ---- optimiser and schedule ---------------------------------------------------------------------------
def test_parameter_groups_give_clip_the_multiplier_and_norms_no_decay():
    cfg = small_config(lr=2e-4, clip_lr_multiplier=0.01, weight_decay=1e-4, weight_decay_norm=0.0)
    model = TinySegmenter()
    groups = {g["name"]: g for g in build_optimizer(model, model.backbone, cfg).param_groups}
    assert set(groups) == {"head", "head_norm", "clip", "clip_norm"}
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    assert ids(groups["clip"]["params"]) == ids(model.backbone.image.parameters())
    assert ids(groups["clip_norm"]["params"]) == ids(model.backbone.text.parameters())  # an embedding
    assert ids(groups["head_norm"]["params"]) == ids(model.norm.parameters())
    assert not ids(model.backbone.frozen.parameters()) & ids(p for g in groups.values() for p in g["params"])
    assert groups["clip"]["lr"] == pytest.approx(2e-6) and groups["clip_norm"]["lr"] == pytest.approx(2e-6)
    assert groups["head"]["lr"] == pytest.approx(2e-4)
    assert groups["head"]["weight_decay"] == groups["clip"]["weight_decay"] == 1e-4
    assert groups["head_norm"]["weight_decay"] == groups["clip_norm"]["weight_decay"] == 0.0


def test_cosine_schedule_without_warmup_reaches_zero(tmp_path):
    cfg = small_config(iterations=8)
    sink = RecordingSink()
    train_double(tmp_path / "run", cfg, sink=sink)
    for step in range(cfg.iterations):  # the row of completed step s+1 holds the rate step s used
        expected = cfg.lr * 0.5 * (1 + np.cos(np.pi * step / cfg.iterations))
        assert sink.rows[step + 1]["lr/head"] == pytest.approx(expected)
        assert sink.rows[step + 1]["lr/clip"] == pytest.approx(expected * cfg.clip_lr_multiplier)
    assert cosine_factor(cfg.iterations, cfg.iterations) == pytest.approx(0.0)


def test_gradients_are_clipped_to_the_total_norm(tmp_path):
    cfg = small_config(iterations=3, grad_clip_norm=1e-3)
    norms_at_step = []

    def record_total_norm(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms_at_step.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    handle = register_optimizer_step_pre_hook(record_total_norm)
    sink = RecordingSink()
    try:
        train_double(tmp_path / "run", cfg, sink=sink)
    finally:
        handle.remove()
    assert len(norms_at_step) == cfg.iterations
    for step, norm in enumerate(norms_at_step, start=1):
        assert sink.rows[step]["train/grad_norm"] > 10 * cfg.grad_clip_norm  # the raw norm was larger
        assert norm == pytest.approx(cfg.grad_clip_norm, rel=1e-4)


# ---- text bank ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text_trains", [True, False])
def test_text_bank_is_recomputed_with_grad_only_when_the_text_tower_trains(tmp_path, text_trains):
    cfg = small_config(iterations=3)
    calls = []
    torch.manual_seed(0)
    model = TinySegmenter()
    text_before = model.backbone.text.weight.detach().clone()

    def bank():
        calls.append(torch.is_grad_enabled())
        return F.normalize(model.backbone.text.weight, dim=-1)

    fit(model, model.backbone, PatternDataset(), bank, tiny_losses, cfg, seed=0, run_dir=tmp_path / "run",
        identity=identity_of(cfg, 0), text_bank_trains=text_trains, progress=False)
    assert calls == ([True] * cfg.iterations if text_trains else [False])
    assert torch.equal(model.backbone.text.weight, text_before) != text_trains


# ---- checkpoints and resume ---------------------------------------------------------------------------
def test_resume_after_a_kill_mid_step_restores_weights_rng_and_curves(tmp_path, one_torch_thread):
    cfg = small_config(iterations=12)
    killed, marker = tmp_path / "killed", tmp_path / "stalled"
    child_code = (
        "import importlib.util, sys;"
        f"spec = importlib.util.spec_from_file_location('trainer_double', {str(Path(__file__))!r});"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module);"
        f"module.killable_child({str(killed)!r}, 6, {str(marker)!r})"
    )
    child = subprocess.Popen([sys.executable, "-c", child_code], cwd=REPO, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    # stalls while loading step 7's batch; checkpoint at step 4, curves to 6
    kill_when(child, marker.exists, 120, "the stall point")
    assert run_status(killed, fingerprint(identity_of(cfg, 0))) == "resumable"
    assert checkpoint_identity(killed)[2] == 4
    _, resumed = train_double(killed, cfg, sink=DVCLiveSink(killed / "dvclive"))
    straight_dir = tmp_path / "straight"
    _, straight = train_double(straight_dir, cfg, sink=DVCLiveSink(straight_dir / "dvclive"))
    assert (resumed.status, resumed.start_step, resumed.step) == ("resumed", 4, 12)
    assert straight.status == "trained"
    a, b = final_weights(killed), final_weights(straight_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the curves the killed process wrote after its checkpoint were replaced, not duplicated
    loss_curve = Path("dvclive/plots/metrics/train/total.tsv")
    resumed_rows = (killed / loss_curve).read_text().splitlines()
    assert resumed_rows == (straight_dir / loss_curve).read_text().splitlines()
    assert len(resumed_rows) == 1 + cfg.iterations


def test_a_changed_config_discards_the_stale_run_with_both_fingerprints_named(tmp_path):
    run = tmp_path / "run"
    cfg = small_config(iterations=4)
    train_double(run, cfg, sink=DVCLiveSink(run / "dvclive"))
    changed = dataclasses.replace(cfg, lr=5e-3, iterations=3)
    with pytest.warns(StaleRunWarning) as caught:
        _, result = train_double(run, changed, sink=DVCLiveSink(run / "dvclive"))
    message = str(caught[0].message)
    assert fingerprint(identity_of(cfg, 0)) in message and fingerprint(identity_of(changed, 0)) in message
    assert str(run) in message and "train.lr: 0.01 -> 0.005" in message
    # retrained from scratch, to the weights a fresh folder gets, with curves of this run only
    assert (result.status, result.start_step, result.step) == ("trained", 0, 3)
    assert run_status(run, fingerprint(identity_of(changed, 0))) == "done"
    fresh = tmp_path / "fresh"
    train_double(fresh, changed)
    a, b = final_weights(run), final_weights(fresh)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = (run / "dvclive/plots/metrics/train/total.tsv").read_text().splitlines()
    assert [row.split("\t")[0] for row in rows[1:]] == ["1", "2", "3"]


def test_a_finished_run_is_skipped_untouched(tmp_path):
    run = tmp_path / "run"
    cfg = small_config(iterations=4)
    _, first = train_double(run, cfg)
    assert first.status == "trained" and run_status(run, first.fingerprint) == "done"
    written = (run / CHECKPOINT_NAME).stat().st_mtime_ns
    _, second = train_double(run, cfg)
    assert second.status == "skipped" and (run / CHECKPOINT_NAME).stat().st_mtime_ns == written


def test_the_same_run_in_two_folders_writes_byte_identical_checkpoints(tmp_path):
    """What a run writes is a function of what it computed, not of the temporary it was written under
    (checkpoint.pt is inside the DVC outputs runs/ and models/: its bytes are their hash)."""
    for name in ("a", "b"):
        train_double(tmp_path / name, small_config(iterations=2, checkpoint_every=2))
    first, second = ((tmp_path / name / CHECKPOINT_NAME).read_bytes() for name in ("a", "b"))
    assert first == second


def test_a_crash_leaves_a_resumable_run_and_a_non_finite_loss_stops_training(tmp_path):
    run = tmp_path / "run"
    cfg = small_config(iterations=8, checkpoint_every=2)
    torch.manual_seed(0)
    model = TinySegmenter()
    calls = []

    def exploding_bank():
        calls.append(1)
        bank = F.normalize(model.backbone.text.weight, dim=-1)
        return bank * (float("nan") if len(calls) == 4 else 1.0)

    with pytest.raises(FloatingPointError, match="step 4"):
        fit(model, model.backbone, PatternDataset(), exploding_bank, tiny_losses, cfg, seed=0, run_dir=run,
            identity=identity_of(cfg, 0), text_bank_trains=True, progress=False)
    assert run_status(run, fingerprint(identity_of(cfg, 0))) == "resumable"
    assert checkpoint_identity(run)[2] == 2


def test_a_run_folder_is_trained_by_one_process_at_a_time(tmp_path):
    with exclusive_run(tmp_path / "run"), pytest.raises(RuntimeError, match="another process is training"):
        train_double(tmp_path / "run", small_config(iterations=2))


# ---- end to end: experiments/train.py, the tiny DCP-CLIP, a prepared training set ---------------------
COLOURS = {3: (220, 30, 30), 17: (30, 200, 40), 42: (40, 60, 230), 100: (230, 220, 40)}  # class -> RGB


@pytest.fixture(scope="module")
def prepared_root(tmp_path_factory) -> Path:
    """A COCO-Stuff-format prepared training set: 12 images of coloured class blocks, some unlabelled."""
    root = tmp_path_factory.mktemp("prepared")
    spec = SPECS["coco_stuff"]
    base = root / spec.key
    (base / "images" / spec.split).mkdir(parents=True)
    (base / "labels" / spec.split).mkdir(parents=True)
    (base / "classes.json").write_text(json.dumps([f"thing {i}" for i in range(spec.num_prompts)]))
    rng = np.random.default_rng(7)
    classes = list(COLOURS)
    for index in range(12):
        label = np.full((96, 128), 255, np.uint8)
        split_row, split_col = int(rng.integers(24, 72)), int(rng.integers(32, 96))
        picks = rng.choice(classes, size=3, replace=False)
        label[:split_row] = picks[0]
        label[split_row:, :split_col] = picks[1]
        label[split_row:, split_col:] = picks[2]
        label[:6, :6] = 255
        image = np.zeros((96, 128, 3), np.uint8)
        for cls, colour in COLOURS.items():
            image[label == cls] = colour
        image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(base / "images" / spec.split / f"{index:06d}.jpg")
        Image.fromarray(label, mode="L").save(base / "labels" / spec.split / f"{index:06d}.png")
    return root


def e2e_overrides(root: Path, runs: Path, iterations: int, checkpoint_every: int) -> list[str]:
    return [f"data.root={root}", f"runs_dir={runs}", f"train.iterations={iterations}", "train.batch_size=2",
            f"train.checkpoint_every={checkpoint_every}", "train.log_every=1", "pretrain=none"]


def test_train_py_resumes_a_killed_run_to_the_uninterrupted_weights(tmp_path, prepared_root, one_torch_thread):
    iterations = 16
    killed = e2e_overrides(prepared_root, tmp_path / "killed", iterations, checkpoint_every=4)
    straight = e2e_overrides(prepared_root, tmp_path / "straight", iterations, checkpoint_every=4)
    cfg = compose_config(killed)
    killed_dir, straight_dir = run_dir(cfg), run_dir(compose_config(straight))
    child = subprocess.Popen([sys.executable, "-m", "experiments.train", *killed], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_when(child, (killed_dir / CHECKPOINT_NAME).exists, 180, "its first checkpoint (step 4)")
    assert run_status(killed_dir, training_fingerprint(cfg)) == "resumable", "killed after it finished"
    killed_at = checkpoint_identity(killed_dir)[2]
    assert 4 <= killed_at < iterations

    assert main(killed) == 0
    assert main(straight) == 0
    a, b = final_weights(killed_dir), final_weights(straight_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any("in_proj_weight" in k for k in a)  # CLIP's q/v projections are part of the trained state
    curve = Path("dvclive/plots/metrics/train/total.tsv")
    assert (killed_dir / curve).read_text() == (straight_dir / curve).read_text()
    assert run_status(killed_dir, training_fingerprint(cfg)) == "done"
    assert main(killed) == 0  # a finished run is skipped


def test_a_run_whose_text_tower_trains_tokenizes_its_vocabulary_once(tmp_path, prepared_root, monkeypatch,
                                                                    one_torch_thread):
    """The bank is encoded anew every step (the text tower trains), its prompts tokenised only at the start."""
    calls = []
    real = open_clip.get_tokenizer

    def counting_tokenizer(arch):
        tokenizer = real(arch)

        def tokenize(prompts):
            calls.append(len(prompts))
            return tokenizer(prompts)

        return tokenize

    monkeypatch.setattr(open_clip, "get_tokenizer", counting_tokenizer)
    overrides = e2e_overrides(prepared_root, tmp_path / "runs", iterations=3, checkpoint_every=3)
    cfg = compose_config(overrides)
    assert cfg.variant == "full" and cfg.head.clip_trainable != "none"  # its text tower trains
    assert main(overrides) == 0
    assert calls == [SPECS["coco_stuff"].num_prompts]


def test_train_py_retrains_a_run_folder_of_another_config(tmp_path, prepared_root, capsys, one_torch_thread):
    overrides = e2e_overrides(prepared_root, tmp_path / "runs", iterations=2, checkpoint_every=2)
    changed = [*overrides, "train.lr=5e-4"]
    assert main(overrides) == 0
    capsys.readouterr()
    with pytest.warns(StaleRunWarning, match="train.lr: 0.001 -> 0.0005"):
        assert main(changed) == 0
    out = capsys.readouterr().out
    assert "holds a run of another training identity (config or code)" in out and "trained " in out
    assert run_status(run_dir(compose_config(changed)), training_fingerprint(compose_config(changed))) == "done"


def test_the_tiny_model_learns_on_the_prepared_set(tmp_path, prepared_root):
    overrides = e2e_overrides(prepared_root, tmp_path / "runs", iterations=60, checkpoint_every=60)
    assert main(overrides) == 0
    curve = run_dir(compose_config(overrides)) / "dvclive/plots/metrics/train/seg.tsv"
    losses = [float(line.split("\t")[1]) for line in curve.read_text().splitlines()[1:]]
    assert len(losses) == 60
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < 0.6 * first, (first, last)
