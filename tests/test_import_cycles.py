"""No import cycle inside the library: every module of `dcpclip/` can be read (and imported) knowing only
the modules below it. Imports inside functions count (a lazy import hides a cycle, it does not remove it)."""

from dcpclip.code_digest import REPO, direct_imports


def library_modules() -> list[str]:
    names = []
    for path in sorted((REPO / "dcpclip").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", path.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == "open":
                return [*path[path.index(child):], child]
            if child not in state and (cycle := visit(child)):
                return cycle
        state[node], _ = "done", path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_inside_dcpclip():
    modules = library_modules()
    assert "dcpclip.data.fetch" in modules and len(modules) > 40
    graph = {name: {m for m in direct_imports(name) if m.startswith("dcpclip")} for name in modules}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle) + " (move the shared names to a lower module)"
