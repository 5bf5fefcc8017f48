"""The code identity of a stage (`dcpclip.code_digest`): the closure follows every import a first-party
module makes (function-local and relative ones, package __init__ files), the digest moves with what the
code does and with the library's data files, and stays put for comments, docstrings, layout and modules
the entry does not import. Exercised on a small repository written here."""

import textwrap

import numpy as np
import pytest

from dcpclip import code_digest
from dcpclip.code_digest import CodeDigestError, code_identity, import_closure
from dcpclip.code_digest import code_digest as digest_of

FILES = {
    "dcpclip/__init__.py": "",
    "dcpclip/model/__init__.py": "",
    "dcpclip/model/head.py": '''
        """The head."""
        from .layers import scale  # relative import


        def forward(x):
            """Docstring."""
            return scale(x) + 1
        ''',
    "dcpclip/model/layers.py": '''
        import numpy as np


        def scale(x):
            return np.float32(2) * x
        ''',
    "dcpclip/model/arch_configs/tiny.json": '{"width": 8}',
    "dcpclip/model/unused.py": "VALUE = 1\n",
    "dcpclip/report/__init__.py": "",
    "dcpclip/report/figures.py": "def plot():\n    return 1\n",
    "experiments/__init__.py": "",
    "experiments/train.py": '''
        import json


        def main():
            from dcpclip.model import head  # function-local: still part of the closure
            return head.forward(1)
        ''',
}


@pytest.fixture
def repo(tmp_path, monkeypatch):
    for name, text in FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    monkeypatch.setattr(code_digest, "REPO", tmp_path)
    import_closure.cache_clear()
    code_identity.cache_clear()
    yield tmp_path
    import_closure.cache_clear()
    code_identity.cache_clear()


def digest_after(repo, name: str, text: str) -> str:
    (repo / name).write_text(textwrap.dedent(text).lstrip())
    import_closure.cache_clear()
    code_identity.cache_clear()
    return digest_of("experiments.train")


def test_the_closure_follows_local_relative_and_package_imports(repo):
    modules, external = import_closure("experiments.train")
    assert modules == ("dcpclip", "dcpclip.model", "dcpclip.model.head", "dcpclip.model.layers",
                       "experiments", "experiments.train")
    assert external == ("numpy",)  # json is the standard library
    identity = code_identity("experiments.train")
    assert set(identity["files"]) == {"dcpclip/__init__.py", "dcpclip/model/__init__.py", "dcpclip/model/head.py",
                                      "dcpclip/model/layers.py", "dcpclip/model/arch_configs/tiny.json",
                                      "experiments/__init__.py", "experiments/train.py"}
    assert identity["packages"] == {"numpy": np.__version__}


def test_comments_docstrings_and_layout_leave_the_digest(repo):
    before = digest_of("experiments.train")
    assert digest_after(repo, "dcpclip/model/head.py", '''
        """The head, now documented at length."""
        from .layers import scale   # a relative import, commented differently


        def forward(x):
            """Another docstring."""
            # a new comment
            return (scale(x)
                    + 1)
        ''') == before


def test_a_change_of_behaviour_or_of_a_data_file_moves_the_digest(repo):
    before = digest_of("experiments.train")
    changed = digest_after(repo, "dcpclip/model/layers.py", '''
        import numpy as np


        def scale(x):
            return np.float32(3) * x
        ''')
    assert changed != before
    assert digest_after(repo, "dcpclip/model/arch_configs/tiny.json", '{"width": 16}') not in (before, changed)


def test_modules_the_entry_does_not_import_leave_the_digest(repo):
    before = digest_of("experiments.train")
    assert digest_after(repo, "dcpclip/model/unused.py", "VALUE = 2\n") == before
    assert digest_after(repo, "dcpclip/report/figures.py", "def plot():\n    return 2\n") == before


def test_an_unknown_entry_or_an_unparsable_module_is_named(repo):
    with pytest.raises(CodeDigestError, match="entry module 'experiments.missing': no source file"):
        import_closure("experiments.missing")
    (repo / "dcpclip/model/layers.py").write_text("def scale(x:\n")
    with pytest.raises(CodeDigestError, match=r"dcpclip/model/layers\.py: cannot read or parse"):
        import_closure("experiments.train")
