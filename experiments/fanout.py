"""Run independent jobs (train runs, evaluations) as parallel Ray Tune trials.

Each job is an importable function `module:function` called with a list of Hydra overrides; it does its
own skip/resume logic, so a rerun redoes only unfinished jobs. With `RAY_ADDRESS` set, the jobs go to
that existing cluster (results must then be on storage every node sees: keep the repository on a shared
filesystem, since every path in the config is relative to it). Without it, a local Ray instance starts
with the CPUs/GPUs of this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from dcpclip import paths
from experiments.cli import add_override_arguments, overrides_from_args
from experiments.compose import compose_config
from experiments.failures import BUG, EXPECTED, is_expected, one_line
from experiments.logs import configure_logging

REPO = Path(__file__).resolve().parent.parent
# How often Tune restarts a failed trial before the stage reports it: a trial whose worker or node dies
# (a lost cluster machine) is retried on the nodes left, where its job resumes from its own last checkpoint.
# A job that fails by itself with an expected error (a bad config, a corrupt checkpoint: `cli.is_expected`)
# is reported at once, not retried: it would fail the same way each time.
TRIAL_RETRIES = 2
EXPECTED_ERROR = "expected_error"  # the metric a trial reports its expected failure under


@dataclasses.dataclass(frozen=True)
class Job:
    name: str  # e.g. "train full seed0"; unique within one fan-out
    function: str  # "module:function", called as function(overrides) -> dict
    overrides: tuple[str, ...]
    where: str = ""  # what it writes (a run folder, a record), named when it finishes
    cost: float = 0.0  # its relative size: a stage starts the costliest pending jobs first, so that the
    # longest (no_prune's) does not start last and run alone at the end

    def command(self) -> str:
        module, function = self.function.split(":")
        return f"python -m {module} {' '.join(self.overrides)}".strip()


@dataclasses.dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    gpus: float = 0.0
    max_concurrent: int = 0  # 0: as many as the resources allow


@dataclasses.dataclass
class Outcome:
    job: Job
    error: str | None
    result: dict
    expected: bool = False  # the error is an expected one (its message says what to fix)


def reference(function: Callable[[list[str]], dict]) -> str:
    """"module:function" of a job function. Stages import the function itself, so their import closure
    (the code identity, and what a test checks their DVC deps against) holds the module the job runs."""
    return f"{function.__module__}:{function.__qualname__}"


def _call(function: str, overrides: list[str]) -> dict:
    module_name, attribute = function.split(":")
    return getattr(importlib.import_module(module_name), attribute)(overrides)


def _trial(config: dict) -> None:
    import ray
    from ray import tune

    if not ray.get_gpu_ids():  # Ray leaves a GPU-less trial every GPU of its node: it would use cuda:0 unasked
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.chdir(config["cwd"])  # every config path is relative to the repository root
    configure_logging(config["verbosity"])  # the library's progress lines, forwarded by Ray to the stage
    job = config["jobs"][config["job"]]
    try:
        result = _call(job["function"], job["overrides"]) or {"ok": 1}
    except Exception as err:
        if not is_expected(err):
            raise  # a bug or a lost worker: Tune retries it and reports the traceback
        result = {EXPECTED_ERROR: one_line(err)}
    tune.report(result)


def verbosity() -> int:
    """The stage's logging verbosity (-1 quiet, 0, 1 debug), passed on to its trials."""
    level = logging.getLogger("dcpclip").getEffectiveLevel()
    return 1 if level <= logging.DEBUG else -1 if level >= logging.WARNING else 0


def finished_jobs_printer(stage: str, by_name: dict[str, Job]):
    """A Tune callback printing each job as it finishes, while the others still run: its name, its time,
    where its output is, or its error."""
    from ray.tune import Callback

    class FinishedJobs(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            job, result = by_name[trial.config["job"]], trial.last_result or {}
            if EXPECTED_ERROR in result:
                print(f"{stage}: {job.name}: FAILED: {result[EXPECTED_ERROR]}", flush=True)
                return
            where = f" -> {job.where}" if job.where else ""
            print(f"{stage}: {job.name}: ok in {result.get('time_total_s', 0.0):.1f} s{where}", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            error = _root_cause(trial.get_error() or RuntimeError("no error file"))  # after its last retry
            print(f"{stage}: {by_name[trial.config['job']].name}: FAILED: {error}", flush=True)

    return FinishedJobs()


def _root_cause(error: BaseException) -> str:
    """The original exception line of a Ray task error (Ray wraps it with a remote traceback)."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


def run_jobs(jobs: list[Job], resources: Resources, storage: Path, stage: str) -> list[Outcome]:
    """Run `jobs` as Ray Tune trials; returns one outcome per job (error text for the failed ones)."""
    if not jobs:
        return []
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # each trial's progress lines, not "[repeated 9x]"
    import ray
    from ray import tune

    if not ray.is_initialized():
        code = {"env_vars": {"PYTHONPATH": str(REPO)}}  # trials import experiments/ (on shared storage on a cluster)
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=True, runtime_env=code)
        else:
            ray.init(include_dashboard=False, log_to_driver=True, runtime_env=code)
    cwd = str(Path.cwd().resolve())
    by_name = {job.name: job for job in jobs}
    trainable = tune.with_resources(_trial, {"cpu": resources.cpus, "gpu": resources.gpus})
    tuner = tune.Tuner(
        trainable,
        param_space={
            "job": tune.grid_search(list(by_name)),
            "jobs": {job.name: {"function": job.function, "overrides": list(job.overrides)} for job in jobs},
            "cwd": cwd,
            "verbosity": verbosity(),
        },
        tune_config=tune.TuneConfig(max_concurrent_trials=resources.max_concurrent or None, reuse_actors=True),
        run_config=tune.RunConfig(name=stage, storage_path=str(storage.resolve()), verbose=0,
                                  callbacks=[finished_jobs_printer(stage, by_name)],
                                  failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES)),
    )
    grid = tuner.fit()
    outcomes = []
    for result in grid:
        job = by_name[result.config["job"]]
        metrics = dict(result.metrics or {})
        if EXPECTED_ERROR in metrics:
            outcomes.append(Outcome(job, metrics[EXPECTED_ERROR], metrics, expected=True))
            continue
        error = None if result.error is None else _root_cause(result.error)
        outcomes.append(Outcome(job, error, metrics))
    return sorted(outcomes, key=lambda o: list(by_name).index(o.job.name))


def run_stage(stage: str, jobs: list[Job], pending: list[bool], resources: Resources, storage: Path) -> int:
    """Run the pending jobs in parallel, print one line per job, and return the exit code: 0 when every
    job succeeded; else 2 when every failure was an expected one, 1 when one was a bug, naming each failed
    job with its error and the command that reruns it alone. The pending jobs start costliest first (in
    plan order among equals)."""
    todo = sorted((job for job, is_pending in zip(jobs, pending, strict=True) if is_pending),
                  key=lambda job: -job.cost)
    for job, is_pending in zip(jobs, pending, strict=True):
        if not is_pending:
            print(f"{stage}: {job.name}: up to date", flush=True)
    if not todo:
        print(f"{stage}: nothing to do ({len(jobs)} jobs up to date)", flush=True)
        return 0
    print(f"{stage}: {len(todo)} of {len(jobs)} jobs to run, {resources.cpus:g} CPU / {resources.gpus:g} GPU "
          f"each, on {os.environ.get('RAY_ADDRESS') or 'a local Ray instance'}", flush=True)
    failed = [outcome for outcome in run_jobs(todo, resources, storage, stage) if outcome.error is not None]
    print(f"{stage}: {len(todo) - len(failed)} of {len(todo)} jobs ok", flush=True)
    for outcome in failed:
        print(f"{stage}: rerun the failed job alone with: {outcome.job.command()}", file=sys.stderr)
    if failed:
        names = ", ".join(o.job.name for o in failed)
        print(f"{stage}: {len(failed)} of {len(todo)} jobs failed ({names}); rerunning the stage redoes "
              "only those", file=sys.stderr)
        return EXPECTED if all(o.expected for o in failed) else BUG
    return 0


def stage_main(stage: str, description: str, plan: Callable[[list[str]], tuple[list[Job], list[bool]]],
               argv: list[str] | None, uses_gpu: bool = True) -> int:
    """The command line of a fan-out stage: overrides (and --params) -> plan the jobs -> run the pending
    ones with the grid's per-trial resources (no GPU for a stage that runs on the CPU: `uses_gpu`)."""
    parser = argparse.ArgumentParser(description=description)
    add_override_arguments(parser)
    overrides = overrides_from_args(parser.parse_args(argv))
    cfg = compose_config(overrides)
    jobs, pending = plan(overrides)
    gpus = cfg.grid.gpus_per_trial if uses_gpu else 0.0
    resources = Resources(cfg.grid.cpus_per_trial, gpus, cfg.grid.max_concurrent)
    return run_stage(stage, jobs, pending, resources, paths.ray_storage_dir(cfg))
