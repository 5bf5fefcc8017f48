"""Training checkpoints: atomic, exactly resumable, and tied to the training identity (config and code)
that made them: a checkpoint of another identity is discarded, never resumed.

One run folder (`dcpclip.paths.run_dir`) holds
    checkpoint.pt   the latest checkpoint, overwritten atomically (write a temporary, then rename)
    done            JSON {"fingerprint", "step"}, written after the final checkpoint
    lock            held (flock) by the process training the run

A checkpoint holds the model's TRAINABLE state only (parameters with requires_grad, plus every persistent
buffer): the frozen CLIP weights are rebuilt from the config (`backbone.pretrained`, `backbone.init_seed`),
which is part of the fingerprint, so checkpoints stay small (the q/v projections, not all of CLIP).
Besides the model it holds the optimiser, scheduler and gradient-scaler states, the RNG states (torch,
CUDA, numpy, python), the data-order position, the step, and the training identity with its fingerprint.
Files are read with `weights_only=True`: no pickled code is ever executed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from dcpclip.atomic import atomic_file, write_text
from dcpclip.errors import ExpectedError

CHECKPOINT_NAME = "checkpoint.pt"
DONE_NAME = "done"
LOCK_NAME = "lock"
FORMAT_VERSION = 1

RunStatus = Literal["fresh", "resumable", "done", "mismatch"]


class CorruptCheckpointError(ExpectedError, RuntimeError):
    """A run's checkpoint that cannot be read (truncated, overwritten): never repaired silently, since it
    holds the only copy of a trained model; the message names it, the hint how to retrain."""


class RunBusyError(ExpectedError, RuntimeError):
    """Another process holds the run's lock: it is training this run now."""


class RunMismatchError(ExpectedError, RuntimeError):
    """A checkpoint of this training identity cannot be resumed (its data order differs)."""


# ---- model state --------------------------------------------------------------------------------------
def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters that train plus persistent buffers: what a checkpoint stores of the model."""
    named = list(model.named_parameters(remove_duplicate=False))
    parameters = {name for name, _ in named}
    trainable = {name for name, p in named if p.requires_grad}
    return {name: t for name, t in model.state_dict().items() if name in trainable or name not in parameters}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Copy a checkpoint's model state into `model` (built from the same config); the key sets must match."""
    expected = set(trainable_state(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{source}: model state does not fit this model (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}); was it trained with another head or clip_trainable setting?"
        )
    model.load_state_dict(state, strict=False)


def load_trained_weights(model: nn.Module, run_dir: str | Path) -> int:
    """Load the trained state of a finished or interrupted run into `model`; returns its step."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: train this run first")
    checkpoint = read_checkpoint(path)
    load_trainable_state(model, checkpoint["model"], path)
    return checkpoint["step"]


# ---- RNG ----------------------------------------------------------------------------------------------
def rng_state(device: torch.device) -> dict[str, Any]:
    """Every generator the next step may draw from: the CPU's, numpy's, Python's, and the CUDA generator of
    the training device only (a Ray trial sees one GPU; its resume alone may see eight)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached_gaussian": cached},
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# ---- files --------------------------------------------------------------------------------------------
def save_checkpoint(run_dir: str | Path, contents: dict[str, Any]) -> Path:
    """Write `contents` (see `Trainer.checkpoint_contents`) atomically to <run_dir>/checkpoint.pt."""
    path = Path(run_dir) / CHECKPOINT_NAME
    with atomic_file(path) as out:
        torch.save({"format_version": FORMAT_VERSION, **contents}, out)
    return path


def read_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint at `path` (a dict); a file torch cannot read, or that is no checkpoint of this code,
    is a `CorruptCheckpointError` naming it."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch reports a damaged zip archive as RuntimeError, a cut pickle as others
        reason = " ".join(str(err).split())[:160]
        raise CorruptCheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(err).__name__}: {reason})",
            hint=f"delete the run folder {path.parent} and run its training again (the train stage "
                 "retrains it from scratch)") from None
    missing = [key for key in ("model", "step", "fingerprint", "identity") if key not in checkpoint] \
        if isinstance(checkpoint, dict) else ["(not a dict)"]
    if missing:
        raise CorruptCheckpointError(f"{path}: not a checkpoint of this code (missing {', '.join(missing)})",
                                     hint=f"delete the run folder {path.parent} and run its training again")
    return checkpoint


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT_NAME
    checkpoint = read_checkpoint(path)
    if checkpoint.get("format_version") != FORMAT_VERSION:
        found = checkpoint.get("format_version")
        raise CorruptCheckpointError(f"{path}: checkpoint format {found}, this code reads format {FORMAT_VERSION}",
                                     hint=f"delete the run folder {path.parent} and run its training again")
    return checkpoint


def checkpoint_identity(run_dir: str | Path) -> tuple[str, dict, int]:
    """(fingerprint, training identity, step) of the stored checkpoint, without reading its tensors."""
    path = Path(run_dir) / CHECKPOINT_NAME
    checkpoint = read_checkpoint(path, mmap=True)
    return checkpoint["fingerprint"], checkpoint["identity"], checkpoint["step"]


@contextlib.contextmanager
def exclusive_run(run_dir: str | Path) -> Iterator[None]:
    """Hold <run_dir>/lock while training, so two processes never write one run; the operating system
    releases it when the holder dies (even by SIGKILL). Also removes temporaries of an interrupted write."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_NAME, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunBusyError(f"another process is training {run_dir} (it holds {lock.name})",
                               hint="wait for it to finish, or stop it; its run resumes where it stopped") from None
        for partial in run_dir.glob(f".{CHECKPOINT_NAME}.*.tmp"):  # atomic_path's names, left by a kill
            partial.unlink()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def mark_done(run_dir: str | Path, fingerprint: str, step: int) -> None:
    write_text(Path(run_dir) / DONE_NAME, json.dumps({"fingerprint": fingerprint, "step": step}) + "\n")


def clear_done(run_dir: str | Path) -> None:
    (Path(run_dir) / DONE_NAME).unlink(missing_ok=True)


def run_status(run_dir: str | Path, fingerprint: str) -> RunStatus:
    """"fresh" (no checkpoint), "mismatch" (a checkpoint of another training identity: config or code),
    "done" (the final checkpoint of this identity and its done marker), or "resumable" (an unfinished run
    of this identity)."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT_NAME).is_file():
        return "fresh"
    stored, _, _ = checkpoint_identity(run_dir)
    if stored != fingerprint:
        return "mismatch"
    done = run_dir / DONE_NAME
    if done.is_file() and json.loads(done.read_text()).get("fingerprint") == fingerprint:
        return "done"
    return "resumable"


def stale_run_message(run_dir: str | Path, fingerprint: str, identity: dict) -> str:
    """Why a run folder's checkpoint is discarded: both fingerprints and which settings, source files or
    package versions differ between its training identity and this one."""
    stored_fingerprint, stored_identity, step = checkpoint_identity(run_dir)
    old, new = _flatten(stored_identity), _flatten(identity)
    differences = [f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}"
                   for k in sorted(set(old) | set(new)) if old.get(k, "<absent>") != new.get(k, "<absent>")]
    return (
        f"{run_dir}: its checkpoint (step {step}) has training fingerprint {stored_fingerprint}, this config "
        f"and code have {fingerprint}; it is never resumed: discarding it and training from scratch. "
        f"Differences: {'; '.join(differences) or 'none visible'}. (Choose another runs_dir to keep both.)"
    )


def discard_run(run_dir: str | Path) -> None:
    """Remove a stale run's checkpoint and done marker (the caller holds the run's lock)."""
    clear_done(run_dir)
    (Path(run_dir) / CHECKPOINT_NAME).unlink(missing_ok=True)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}
