"""The public API of `dcpclip/__init__.py`: every name resolves to the object of its module, lazily, so
importing the package loads nothing heavy and no stage's code identity grows."""

from __future__ import annotations

import subprocess
import sys

import pytest

import dcpclip
from dcpclip.code_digest import import_closure


@pytest.mark.parametrize("name", [n for n in dcpclip.__all__ if n != "__version__"])
def test_every_public_name_is_its_module_object(name):
    value = getattr(dcpclip, name)
    module = sys.modules[dcpclip._API[name]]
    assert value is getattr(module, name)


def test_an_unknown_name_lists_the_api():
    with pytest.raises(AttributeError, match="public API: ExperimentConfig"):
        dcpclip.no_such_thing  # noqa: B018


def test_importing_the_package_loads_no_torch():
    loaded = subprocess.run([sys.executable, "-c", "import dcpclip, dcpclip.paths, sys; print('torch' in sys.modules)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "False"


def test_the_api_does_not_enter_the_code_identity_of_a_stage_that_does_not_import_it():
    first_party, _ = import_closure("experiments.prepare")
    assert "dcpclip" in first_party and "dcpclip.model.build" not in first_party
