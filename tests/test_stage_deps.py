"""dvc.yaml's code deps are each stage's import closure: DVC runs a stage whenever a file it imports
changes (a missing dep would let a code change pass unnoticed), and lists no code the stage does not run
(an extra dep would redo a stage for nothing). The static closure is the one the stage identities hash
(`dcpclip.code_digest`); a fresh interpreter importing each entry must load no first-party module outside
it."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dcpclip.code_digest import FIRST_PARTY, import_closure, library_data_files, module_file

REPO = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def entry_of(stage: dict) -> str:
    match = re.match(r"python -m ([\w.]+)", stage["cmd"])
    assert match, f"stage command {stage['cmd']!r} does not run a module"
    return match.group(1)


def code_deps(stage: dict) -> list[str]:
    deps = [next(iter(d)) if isinstance(d, dict) else d for d in stage["deps"]]
    return [d for d in deps if d.split("/")[0] in FIRST_PARTY and not d.startswith("experiments/conf")]


def closure_files(entry: str) -> set[str]:
    modules, _ = import_closure(entry)
    files = {module_file(name) for name in modules} | set(library_data_files(modules))
    return {str(path.relative_to(REPO)) for path in files}


def covers(dep: str, path: str) -> bool:
    return path == dep or path.startswith(dep.rstrip("/") + "/")


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_file_a_stage_imports_is_one_of_its_deps(name):
    deps = code_deps(STAGES[name])
    missing = sorted(f for f in closure_files(entry_of(STAGES[name])) if not any(covers(d, f) for d in deps))
    assert not missing, f"dvc.yaml stage {name!r}: add to its deps the files it imports: {missing}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_code_dep_of_a_stage_is_code_it_imports(name):
    files = closure_files(entry_of(STAGES[name]))
    extra = []
    for dep in code_deps(STAGES[name]):
        under = {str(p.relative_to(REPO)) for p in (REPO / dep).rglob("*") if p.is_file()} \
            if (REPO / dep).is_dir() else {dep}
        under = {f for f in under if "__pycache__" not in f}
        if not under or not under <= files:
            extra.append(dep)
    assert not extra, f"dvc.yaml stage {name!r}: these deps are code it does not import: {extra}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_fresh_interpreter_loads_no_first_party_module_outside_the_static_closure(name):
    entry = entry_of(STAGES[name])
    code = (f"import importlib, json, sys; importlib.import_module({entry!r}); "
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FIRST_PARTY!r})))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True,
                                       text=True).stdout)
    static, _ = import_closure(entry)
    assert entry in loaded and set(loaded) <= set(static), sorted(set(loaded) - set(static))
