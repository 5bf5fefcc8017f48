"""The environment stamp every record carries: package versions, device, git commit."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

import torch

PACKAGES = ("torch", "torchvision", "open_clip_torch", "fvcore", "numpy", "dcpclip")


GENERATED_PATHS = ("dvc.lock", "results", "reports")


def git_commit(cwd: str | Path = ".") -> str | None:
    """HEAD of the working tree (with "+dirty" when it has uncommitted changes), or None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              check=True).stdout.strip()
        # what a running `dvc repro` rewrites by design says nothing about the code: dvc.lock and the
        # committed pipeline outputs (results/, reports/)
        generated = [f":(top,exclude){path}" for path in GENERATED_PATHS]
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)", *generated],
                               cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def device_name(device: torch.device | str = "cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def environment_stamp(device: torch.device | str = "cpu") -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "packages": versions,
        "device": device_name(device),
        "git_commit": git_commit(Path(__file__).resolve().parent),
    }
