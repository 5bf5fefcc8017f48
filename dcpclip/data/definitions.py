"""Readers for the benchmark definition files: the pinned CAT-Seg name lists, the A-847 id selection
inside CAT-Seg's `prepare_ade20k_full.py` (parsed with `ast` as data; the file is never imported or run),
id lists, and Pascal Context's `labels.txt`. Every reader names the file when its content is not as expected.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from dcpclip.data.errors import DataError

ADE20K_FULL_LIST = "ADE20K_SEM_SEG_FULL_CATEGORIES"


def read_names(path: Path, expected: int) -> list[str]:
    """A JSON list of `expected` class names, kept exactly as published (spaces included)."""
    try:
        names = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable name list ({err})") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{path}: expected a JSON list of strings")
    if len(names) != expected:
        raise DataError(f"{path}: {len(names)} names, expected {expected}")
    return names


def read_ade20k_full_categories(path: Path, expected: int) -> list[dict]:
    """The `ADE20K_SEM_SEG_FULL_CATEGORIES` list literal: [{"name", "id", "trainId"}, ...]."""
    try:
        tree = ast.parse(Path(path).read_text(), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable Python source ({err})") from None
    literal = next(
        (
            node.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == ADE20K_FULL_LIST for t in node.targets)
        ),
        None,
    )
    if literal is None:
        raise DataError(f"{path}: no top-level assignment to {ADE20K_FULL_LIST}")
    try:
        categories = ast.literal_eval(literal)
    except ValueError as err:
        raise DataError(f"{path}: {ADE20K_FULL_LIST} is not a plain literal ({err})") from None
    if not isinstance(categories, list) or len(categories) != expected:
        raise DataError(f"{path}: {ADE20K_FULL_LIST} has {len(categories)} entries, expected {expected}")
    for i, cat in enumerate(categories):
        if not (
            isinstance(cat, dict) and isinstance(cat.get("id"), int) and isinstance(cat.get("trainId"), int)
        ):
            raise DataError(f"{path}: {ADE20K_FULL_LIST}[{i}] is not a dict with integer 'id' and 'trainId'")
    if sorted(c["trainId"] for c in categories) != list(range(expected)):
        raise DataError(f"{path}: {ADE20K_FULL_LIST} trainIds are not 0..{expected - 1}, each once")
    if len({c["id"] for c in categories}) != expected:
        raise DataError(f"{path}: {ADE20K_FULL_LIST} repeats an ADE object id")
    return categories


def read_ids(path: Path) -> list[str]:
    """One image id per line (blank lines and surrounding spaces ignored)."""
    try:
        return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: unreadable id list ({err})") from None


def read_pascal_context_labels(path: Path) -> dict[int, str]:
    """Pascal Context's `labels.txt`: `idx: name` lines, 1-based."""
    labels = {}
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: unreadable ({err})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        idx, sep, name = line.partition(":")
        if not sep or not idx.strip().isdigit():
            raise DataError(f"{path}:{number}: expected 'idx: name', got {line!r}")
        labels[int(idx)] = name.strip()
    return labels
