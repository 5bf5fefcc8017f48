"""Session-wide test setup. The suite runs on two pytest-xdist workers, one test module per worker at a time
(pyproject.toml: `-n 2 --dist loadfile`): torch gets one worker's share of the cores, OpenMP threads yield
instead of spinning (two busy workers on two cores would otherwise stall each other's thread barriers), Ray
trials run at normal priority, and the modules are ordered so that the shared offline pipeline run starts at
once and no worker waits for it or is left with a long tail."""

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads OpenMP: before the import
os.environ.setdefault("RAY_worker_niceness", "0")  # Ray trials (the shared pipeline run's) get a fair share

import pytest  # noqa: E402
import torch  # noqa: E402
from offline_workspace import REPO, Workspace, shared_workspace  # noqa: E402
from output_guard import changed, snapshot  # noqa: E402

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // WORKERS)))
# modules using the shared offline pipeline run: the one that makes it (and reruns on it) goes first; the
# other last, so that its worker works through the rest meanwhile instead of waiting for the run
FIRST_MODULE, LAST_MODULE = "test_offline_pipeline", "test_dvc_experiments"
OUTPUTS_BEFORE = pytest.StashKey[dict]()


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the controller (or the only process) checks, once
        session.config.stash[OUTPUTS_BEFORE] = snapshot(REPO)


def pytest_sessionfinish(session):
    """Fail the session when a test wrote into the repository's own outputs (tests/output_guard.py)."""
    before = session.config.stash.get(OUTPUTS_BEFORE, None)
    written = changed(before, snapshot(REPO)) if before is not None else []
    if written:
        shown = "\n  ".join(written[:20]) + (f"\n  ... and {len(written) - 20} more" if len(written) > 20 else "")
        print(f"\nthe tests wrote into the repository's outputs (write under tmp_path instead):\n  {shown}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items):
    """FIRST_MODULE, then the modules of the other slow tests, then the rest, then LAST_MODULE (xdist
    schedules modules in the order their first test appears)."""
    def place(item) -> tuple[int, bool]:
        module = item.module.__name__
        return ({FIRST_MODULE: 0, LAST_MODULE: 2}.get(module, 1), item.get_closest_marker("slow") is None)

    items.sort(key=place)


@pytest.fixture(scope="session")
def offline_workspace(tmp_path_factory, worker_id) -> Workspace:
    """The repository as CI sees it after one `dvc repro` of the offline profile, made once for all xdist
    workers of this run (`offline_workspace.shared_workspace`); read it, never change it (change an
    `offline_workspace.private_copy`)."""
    base = tmp_path_factory.getbasetemp()
    return shared_workspace(base if worker_id == "master" else base.parent)  # parent: this run's, all workers'


@pytest.fixture(scope="session")
def tiny_backbone():
    from dcpclip.model.backbone import build_backbone
    from dcpclip.model.config import BackboneConfig

    return build_backbone(BackboneConfig())


@pytest.fixture
def one_torch_thread():
    """The test runs on one torch thread (a thread count the trained weights must not depend on, and the
    one a subprocess under test uses), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
