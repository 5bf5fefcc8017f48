"""The identity of the code a stage runs: which first-party source files its entry point imports, what
they say, and the versions of the packages they import. Every run, evaluation, FLOP count, pre-training
and preparation puts its stage's code identity into its fingerprint, so a change of code redoes exactly
the work that imports the changed file (and a change elsewhere redoes nothing).

The import closure is read from the sources, not from a hand list: starting at the entry module, every
`import` and `from ... import` statement in a first-party module (at any depth, function-local imports
included) is followed, package `__init__` files included. A module is hashed by its syntax tree without
docstrings, so a change of a comment, a docstring or the layout leaves the digest alone while any change
of what the code does moves it. Non-Python files the library ships beside its modules (the pinned source
hashes, the tiny model's architecture JSON) are hashed by their bytes. Third-party code enters as the
installed versions of the distributions the closure imports directly (all pinned in pyproject.toml), and
the Python version.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import json
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("dcpclip", "experiments", "ablations")
LIBRARY = "dcpclip"  # the package whose non-Python files are code (experiments/conf is config, fingerprinted)


class CodeDigestError(RuntimeError):
    """An entry module, or a first-party module it imports, cannot be found or parsed."""


def module_file(name: str) -> Path | None:
    """The source file of first-party module `name` (a package's `__init__.py`), or None if there is none."""
    if name.split(".")[0] not in FIRST_PARTY:
        return None
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imported_names(tree: ast.Module, name: str, path: Path) -> set[str]:
    """Every module name the statements of `tree` may import: for `from a import b`, both `a` and `a.b`
    (b may be a submodule); relative imports resolved against the module's package."""
    names = set()
    package = _package_of(name, path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def direct_imports(name: str) -> set[str]:
    """The first-party modules (with a source file) that module `name` imports itself, anywhere in it."""
    path = module_file(name)
    if path is None:
        raise CodeDigestError(f"module {name!r}: no source file under {REPO}")
    return {imported for imported in _imported_names(_parse(path), name, path)
            if imported != name and module_file(imported) is not None}


def _parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError) as err:
        raise CodeDigestError(f"{path}: cannot read or parse it for the code digest ({err})") from None


def _with_parents(name: str) -> list[str]:
    """"a.b.c" -> ["a", "a.b", "a.b.c"]: importing a module runs its packages' __init__ files first."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@functools.cache
def import_closure(entry: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(first-party modules, third-party top-level modules) that `entry` imports, directly or not; sorted."""
    if module_file(entry) is None:
        raise CodeDigestError(f"entry module {entry!r}: no source file under {REPO}")
    seen, external, queue = set(), set(), _with_parents(entry)
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        path = module_file(name)
        if path is None:
            continue  # `from package import attribute`: the attribute is no module
        seen.add(name)
        for imported in _imported_names(_parse(path), name, path):
            top = imported.split(".")[0]
            if top in FIRST_PARTY:
                queue.extend(_with_parents(imported))
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                external.add(top)
    return tuple(sorted(seen)), tuple(sorted(external))


def _normalised_source(path: Path) -> bytes:
    """The syntax tree without docstrings, as text: what the code does, not how it is written down."""
    tree = _parse(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False).encode()


def library_data_files(modules: tuple[str, ...]) -> list[Path]:
    """Non-Python files shipped in the library folders of `modules` (their own folder and its non-package
    subfolders, e.g. dcpclip/model/arch_configs/*.json for any dcpclip.model module)."""
    folders = {module_file(name).parent for name in modules if name.split(".")[0] == LIBRARY}
    files = set()
    for folder in folders:
        for path in folder.rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            owner = path.parent
            while owner != folder and not (owner / "__init__.py").is_file():
                owner = owner.parent
            if owner == folder:  # not inside a sub-package (that package's folder owns it)
                files.add(path)
    return sorted(files)


@functools.cache
def _providers() -> dict[str, list[str]]:
    """{top-level module: distributions providing it} of the environment (a scan of every installed
    distribution: about 0.9 s, so once per process)."""
    return importlib.metadata.packages_distributions()


def _distribution_versions(top_level: tuple[str, ...]) -> dict[str, str]:
    """Installed version of each distribution that provides one of these top-level modules."""
    providers = _providers()
    versions = {}
    for module in top_level:
        for distribution in providers.get(module, []):
            versions[distribution] = importlib.metadata.version(distribution)
    return dict(sorted(versions.items()))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@functools.cache
def code_identity(entry: str) -> dict:
    """{"entry", "files": {repo-relative path: digest}, "packages": {distribution: version}, "python"} of
    the code `entry` runs. A fingerprint of it changes exactly when that code changes."""
    modules, external = import_closure(entry)
    files = {str(module_file(name).relative_to(REPO)): _digest(_normalised_source(module_file(name)))
             for name in modules}
    files.update({str(path.relative_to(REPO)): _digest(path.read_bytes()) for path in library_data_files(modules)})
    return {
        "entry": entry,
        "files": dict(sorted(files.items())),
        "packages": _distribution_versions(external),
        "python": ".".join(platform.python_version_tuple()[:2]),
    }


def code_digest(entry: str) -> str:
    """Short sha256 of `code_identity(entry)`."""
    return _digest(json.dumps(code_identity(entry), sort_keys=True).encode())

