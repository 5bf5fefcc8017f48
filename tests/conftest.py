import os

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
