"""The training loop: plain PyTorch, resumable to the bit.

`fit` trains any segmenter with the model contract `model(images, text_bank, targets) -> output` and a
loss function `loss_fn(output, targets) -> {"total": ..., <terms>}` for `TrainConfig.iterations` steps:
AdamW with CAT-Seg's groups and cosine schedule (`optim.py`), gradient clipping by the total norm of all
trainable parameters, mixed precision on CUDA only (CPU runs fp32, seeded and deterministic).

Resume is exact: the data order is a pure function of (seed, step) (`sampler.py`), and a checkpoint
(`checkpoint.py`) restores everything else that the next step depends on. Killing the process at any
moment and calling `fit` again gives the weights an uninterrupted run gives (tested on CPU with
`torch.equal`). A run folder written with another training config is refused, never overwritten.

`train_experiment` is the assembly for one `ExperimentConfig`: DCP-CLIP of the variant with its trainable
CLIP parameters (`dcpclip.model.trainable`), the prepared training set, the 171-name text bank, the losses.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import open_clip
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dcpclip import paths
from dcpclip.config import ExperimentConfig
from dcpclip.config_schema import ConfigError
from dcpclip.data.datasets import read_class_names, training_dataset
from dcpclip.data.specs import SPECS
from dcpclip.engine.checkpoint import (
    CHECKPOINT_NAME,
    RunMismatchError,
    RunStatus,
    clear_done,
    exclusive_run,
    load_checkpoint,
    load_trainable_state,
    mark_done,
    mismatch_message,
    restore_rng_state,
    rng_state,
    run_status,
    save_checkpoint,
    trainable_state,
)
from dcpclip.engine.config import TrainConfig
from dcpclip.engine.optim import build_optimizer, build_scheduler
from dcpclip.engine.sampler import StepBatchSampler
from dcpclip.model.build import build_model
from dcpclip.model.losses import segmentation_losses
from dcpclip.model.text_bank import encode_vocabulary
from dcpclip.model.trainable import set_trainable
from dcpclip.model.variants import apply_variant, resolve_variant


class MetricsSink(Protocol):
    """Where training curves go (the entry point passes a DVCLive writer; the library imports no logger)."""

    def start(self, step: int) -> None:
        """Before the first step: 0 for a fresh run, else the resumed step; anything an interrupted
        process logged after `step` must be dropped (it will be logged again)."""

    def log(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    status: Literal["trained", "resumed", "skipped"]  # skipped: the run was already done
    run_dir: Path
    fingerprint: str
    start_step: int  # where this call began (0 fresh, k resumed, `iterations` skipped)
    step: int  # steps completed when it returned
    seconds: float  # wall time of the steps this call ran (0 when skipped)

    @property
    def steps_per_second(self) -> float:
        return (self.step - self.start_step) / self.seconds if self.seconds else 0.0


def check_train_config(cfg: TrainConfig) -> None:
    positive = ("iterations", "batch_size", "checkpoint_every", "log_every")
    for key in positive:
        if getattr(cfg, key) < 1:
            raise ConfigError(f"train.{key}: must be >= 1, got {getattr(cfg, key)}")
    for key in ("lr", "grad_clip_norm"):
        if not getattr(cfg, key) > 0:
            raise ConfigError(f"train.{key}: must be > 0, got {getattr(cfg, key)}")
    for key in ("weight_decay", "weight_decay_norm", "clip_lr_multiplier"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"train.{key}: must be >= 0, got {getattr(cfg, key)}")


def mixed_precision(cfg: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype]:
    """(autocast on?, its dtype): only on CUDA; CPU stays fp32 so runs are deterministic."""
    enabled = cfg.amp and device.type == "cuda"
    dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
    if enabled and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.amp_dtype: this GPU has no bfloat16 support; use train.amp_dtype=float16")
    return enabled, dtype


def training_device(cfg: TrainConfig, device: torch.device | str | None) -> torch.device:
    """Apply `cfg.threads` to this process; the device to train on (CUDA when available, unless given)."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # also seeds every CUDA device
    np.random.seed(seed)
    random.seed(seed)


def checked_status(run_dir: Path, identity: dict) -> RunStatus:
    """`run_status` of the run folder for this training identity; a mismatch raises `RunMismatchError`."""
    fingerprint = paths.fingerprint(identity)
    status = run_status(run_dir, fingerprint)
    if status == "mismatch":
        raise RunMismatchError(mismatch_message(run_dir, fingerprint, identity))
    return status


def fit(
    model: nn.Module,
    clip: nn.Module,
    dataset: Dataset,
    text_bank: Callable[[], torch.Tensor],
    loss_fn: Callable[[object, torch.Tensor], Mapping[str, torch.Tensor]],
    cfg: TrainConfig,
    *,
    seed: int,
    run_dir: str | Path,
    identity: dict,
    text_bank_trains: bool,
    device: torch.device | str = "cpu",
    sink: MetricsSink | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> TrainingResult:
    """Train `model` into `run_dir`, resuming its checkpoint if there is one.

    model: `model(images [B,3,S,S], text_bank [C,D], targets [B,S,S]) -> output`, in train mode.
    clip: the CLIP submodule of `model` (its trainable parameters run at lr * clip_lr_multiplier).
    dataset: indexed by `sampler.SampleKey`, returns (image [3,S,S] float, target [S,S] long).
    text_bank: -> [C, D] bank of the training vocabulary; called every step with grad when
        `text_bank_trains` (the text tower has trainable parameters), else once without grad.
    identity: everything that determines the trained weights (`dcpclip.paths.training_identity`); its
        fingerprint ties the checkpoint to the config.
    """
    check_train_config(cfg)
    run_dir, device = Path(run_dir), torch.device(device)
    fingerprint = paths.fingerprint(identity)
    with exclusive_run(run_dir):
        status = checked_status(run_dir, identity)
        if status == "done":
            return TrainingResult("skipped", run_dir, fingerprint, cfg.iterations, cfg.iterations, 0.0)

        model.to(device).train()
        optimizer = build_optimizer(model, clip, cfg)
        scheduler = build_scheduler(optimizer, cfg)
        amp, amp_dtype = mixed_precision(cfg, device)
        scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
        data_position = {"seed": seed, "batch_size": cfg.batch_size, "dataset_size": len(dataset)}
        if status == "resumable":
            start = resume(run_dir, model, optimizer, scheduler, scaler, data_position)
        else:
            start = 0
            clear_done(run_dir)
            seed_everything(seed)

        def save(step: int) -> None:
            save_checkpoint(run_dir, {
                "step": step,
                "fingerprint": fingerprint,
                "identity": identity,
                "model": trainable_state(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng_state(),
                "data": {**data_position, "next_step": step},
            })

        loader = DataLoader(
            dataset,
            batch_sampler=StepBatchSampler(len(dataset), cfg.batch_size, seed, start, cfg.iterations),
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),  # keeps the loader off the global RNG
        )
        trainable = [p for group in optimizer.param_groups for p in group["params"]]
        fixed_bank = None
        if not text_bank_trains:
            with torch.no_grad():
                fixed_bank = text_bank()  # [C, D]

        if sink is not None:
            sink.start(start)
        sums: dict[str, torch.Tensor] = {}
        window = 0
        bar = tqdm(total=cfg.iterations, initial=start, desc=str(run_dir), disable=not progress)
        began = time.perf_counter()
        step = start
        try:
            for images, targets in loader:
                images = images.to(device, non_blocking=True)  # [B, 3, S, S]
                targets = targets.to(device, non_blocking=True)  # [B, S, S]
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                    bank = text_bank() if fixed_bank is None else fixed_bank  # [C, D]
                    output = model(images, bank, targets)
                    losses = loss_fn(output, targets)
                total = losses["total"]
                if not torch.isfinite(total):
                    raise FloatingPointError(
                        f"{run_dir}: loss is {total.item()} at step {step + 1}; the last checkpoint is kept"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip_norm)  # before clipping
                learning_rates = {f"lr/{g['name']}": g["lr"] for g in optimizer.param_groups}
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step += 1
                bar.update()

                for name, value in {**losses, "grad_norm": grad_norm}.items():
                    sums[name] = sums.get(name, 0.0) + value.detach().float()
                window += 1
                if step % cfg.log_every == 0 or step == cfg.iterations:
                    means = {f"train/{name}": (value / window).item() for name, value in sums.items()}
                    bar.set_postfix(loss=f"{means['train/total']:.4f}")
                    if sink is not None:
                        sink.log(step, {**means, **learning_rates})
                    sums, window = {}, 0
                if step % cfg.checkpoint_every == 0 or step == cfg.iterations:
                    save(step)
        finally:
            bar.close()
            if sink is not None:
                sink.close()
        seconds = time.perf_counter() - began
        if step != cfg.iterations:
            raise RuntimeError(f"{run_dir}: the data loader stopped at step {step} of {cfg.iterations}")
        mark_done(run_dir, fingerprint, step)
    return TrainingResult("resumed" if start else "trained", run_dir, fingerprint, start, step, seconds)


def resume(run_dir: Path, model, optimizer, scheduler, scaler, data_position: dict) -> int:
    """Restore everything the next step depends on from <run_dir>/checkpoint.pt; returns its step."""
    checkpoint = load_checkpoint(run_dir)
    stored_position = {k: checkpoint["data"][k] for k in data_position}
    if stored_position != data_position:
        raise RunMismatchError(
            f"refusing to resume {run_dir}: its data order was {stored_position}, now {data_position} "
            "(did the prepared training set change?); delete the run folder to retrain"
        )
    load_trainable_state(model, checkpoint["model"], run_dir / CHECKPOINT_NAME)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    scaler.load_state_dict(checkpoint["scaler"])
    restore_rng_state(checkpoint["rng"])  # last: nothing after it may draw random numbers
    return checkpoint["step"]


def train_experiment(
    cfg: ExperimentConfig,
    *,
    device: torch.device | str | None = None,
    sink: MetricsSink | None = None,
    progress: bool = True,
) -> TrainingResult:
    """Train the run of `cfg` into `dcpclip.paths.run_dir(cfg)`: skip it when done, resume it when
    interrupted, refuse a folder of another training config (before anything is built or loaded).

    The model is DCP-CLIP of `cfg.variant` with `head.clip_trainable` CLIP parameters; the data is the
    prepared training set `cfg.data.train_dataset` with its full vocabulary (171 COCO-Stuff names)."""
    _, needs_training = resolve_variant(cfg.variant)
    if not needs_training:
        raise ValueError(f"variant {cfg.variant!r} is training-free: it has no training run")
    identity = paths.training_identity(cfg)
    folder = paths.run_dir(cfg)
    if checked_status(folder, identity) == "done":
        return TrainingResult("skipped", folder, paths.fingerprint(identity), cfg.train.iterations,
                              cfg.train.iterations, 0.0)
    device = training_device(cfg.train, device)

    spec = SPECS[cfg.data.train_dataset]
    names = read_class_names(cfg.data.root, spec)
    dataset = training_dataset(cfg.data.root, spec, cfg.train.crop_size, cfg.seed)
    head = apply_variant(cfg.head, cfg.variant)
    torch.manual_seed(cfg.seed)  # the head's initialisation (CLIP has its own init_seed or weights)
    model = build_model(cfg.backbone, cfg.head, cfg.variant)
    set_trainable(model, head)
    tokenizer = open_clip.get_tokenizer(cfg.backbone.arch)
    text_trains = any(p.requires_grad for p in model.backbone.text_parameters())
    return fit(
        model,
        model.backbone,
        dataset,
        lambda: encode_vocabulary(model.backbone, tokenizer, names, cfg.text),  # [171, D]
        lambda output, targets: segmentation_losses(output, targets, head),
        cfg.train,
        seed=cfg.seed,
        run_dir=folder,
        identity=identity,
        text_bank_trains=text_trains,
        device=device,
        sink=sink,
        num_workers=cfg.data.num_workers,
        progress=progress,
    )
