"""The training loop: plain PyTorch, resumable to the bit.

`fit` trains any segmenter with the model contract `model(images, text_bank, targets) -> output` and a
loss function `loss_fn(output, targets) -> {"total": ..., <terms>}` for `TrainConfig.iterations` steps:
AdamW with CAT-Seg's groups and cosine schedule (`optim.py`), gradient clipping by the total norm of all
trainable parameters, mixed precision on CUDA only (CPU runs fp32, seeded and deterministic).

Resume is exact: the data order is a pure function of (seed, step) (`sampler.py`), and a checkpoint
(`checkpoint.py`) restores everything else that the next step depends on. Killing the process at any
moment and calling `fit` again gives the weights an uninterrupted run gives (tested on CPU with
`torch.equal`). A run folder written with another training identity (config or code) is never resumed: its
checkpoint is discarded, with a warning naming what differs, and the run starts from scratch.

The assemblies that call `fit` live beside it: `segmenter_training` (DCP-CLIP) and `pretrain` (CLIP).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import random
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dcpclip import paths
from dcpclip.config_schema import ConfigError
from dcpclip.engine.checkpoint import (
    CHECKPOINT_NAME,
    RunMismatchError,
    RunStatus,
    clear_done,
    discard_run,
    exclusive_run,
    load_checkpoint,
    load_trainable_state,
    mark_done,
    restore_rng_state,
    rng_state,
    run_status,
    save_checkpoint,
    stale_run_message,
    trainable_state,
)
from dcpclip.engine.config import TrainConfig
from dcpclip.engine.optim import build_optimizer, build_scheduler
from dcpclip.engine.sampler import StepBatchSampler

log = logging.getLogger(__name__)


def progress_line(run_dir: Path, step: int, start: int, iterations: int, loss: float, seconds: float) -> str:
    """"<run>: step 100/300, loss 1.2345, 4.20 steps/s, ETA 0:00:48": the rate over this call's steps."""
    rate = (step - start) / seconds if seconds > 0 else 0.0
    eta = datetime.timedelta(seconds=round((iterations - step) / rate)) if rate else "?"
    return f"{run_dir}: step {step}/{iterations}, loss {loss:.4f}, {rate:.2f} steps/s, ETA {eta}"


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


class StaleRunWarning(UserWarning):
    """A run folder held a checkpoint of another training identity; it was discarded."""


def fresh_unless_current(run_dir: Path, identity: dict) -> RunStatus:
    """`run_status` of the run folder for this training identity, after discarding a checkpoint of
    another identity (so "mismatch" becomes "fresh"). The caller holds the run's lock."""
    fingerprint = paths.fingerprint(identity)
    status = run_status(run_dir, fingerprint)
    if status == "mismatch":
        warnings.warn(stale_run_message(run_dir, fingerprint, identity), StaleRunWarning, stacklevel=3)
        discard_run(run_dir)
        return "fresh"
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
        status = fresh_unless_current(run_dir, identity)
        if status == "done":
            return TrainingResult("skipped", run_dir, fingerprint, cfg.iterations, cfg.iterations, 0.0)

        model.to(device).train()
        optimizer = build_optimizer(model, clip, cfg)
        scheduler = build_scheduler(optimizer, cfg)
        amp, amp_dtype = mixed_precision(cfg, device)
        scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
        data_position = {"seed": seed, "batch_size": cfg.batch_size, "dataset_size": len(dataset)}
        if status == "resumable":
            start = resume(run_dir, model, optimizer, scheduler, scaler, data_position, device)
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
                "rng": rng_state(device),
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
                    if not progress:  # no bar (a Ray trial, a pipe): one line per log_every steps
                        log.info(progress_line(run_dir, step, start, cfg.iterations, means["train/total"],
                                               time.perf_counter() - began))
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


def resume(run_dir: Path, model, optimizer, scheduler, scaler, data_position: dict, device: torch.device) -> int:
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
    restore_rng_state(checkpoint["rng"], device)  # last: nothing after it may draw random numbers
    return checkpoint["step"]
