"""The import graph of ``wp`` (module-level and function-level imports alike) has no cycle, and a
stage (wp/stages/*) imports only the library, never another stage (issue 17)."""

import ast
from pathlib import Path

from conftest import REPO


def graph(root: Path) -> dict[str, set[str]]:
    """module -> the ``wp`` modules it imports anywhere in its file (``from pkg import name`` of a
    submodule counts as that submodule, of anything else as ``pkg``; ``wp`` itself, which every module
    imports WPError from, is left out)."""
    files = {}
    for path in (root / "wp").rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        files[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    out = {}
    for name, (path, is_package) in files.items():
        package = name if is_package else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                subs = {f"{source}.{a.name}" for a in node.names} & set(files)
                deps |= subs or {source}
                if subs != {f"{source}.{a.name}" for a in node.names}:
                    deps.add(source)
        out[name] = {d for d in deps if d in files and d not in ("wp", name)}
    return out


def cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``g`` (None if there is none)."""
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, stack)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_the_import_graph_of_wp_is_acyclic():
    g = graph(REPO)
    assert len(g) > 40 and "wp.stages.cluster" in g and "wp.poolfile" in g["wp.stages.wp_train"]
    assert cycle(g) is None, " -> ".join(cycle(g))


def test_the_check_finds_a_cycle_through_a_function_level_import(tmp_path):
    (tmp_path / "wp").mkdir()
    (tmp_path / "wp" / "__init__.py").write_text("class WPError(Exception): ...\n")
    (tmp_path / "wp" / "a.py").write_text("from wp import WPError\nfrom wp.b import f\n")
    (tmp_path / "wp" / "b.py").write_text("def f():\n    from wp import a\n")
    assert cycle(graph(tmp_path)) == ["wp.a", "wp.b", "wp.a"]


def test_stages_import_only_the_library():
    g = graph(REPO)
    for stage in (m for m in g if m.startswith("wp.stages.")):
        assert not {d for d in g[stage] if d.startswith("wp.stages")}, stage
    assert not any(d.startswith("wp.stages") for m, deps in g.items() if not m.startswith("wp.stages") for d in deps
                   if m not in ("wp.cli",))
