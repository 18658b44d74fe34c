"""The source files of ``wp`` that a workflow command runs: its transitive import closure.

Every Snakemake rule runs ``python -m wp <command>``; its code inputs (editing one reruns the job) are
the files this module finds, never a hand-kept list. The walk is static (``ast``): it follows every
``import wp...`` / ``from wp... import ...`` of a file, at module level and inside functions alike,
and the package ``__init__.py`` files such an import executes. The two files that look a module up by
name (``REGISTRIES``: ``wp/cli.py``'s ``COMMANDS`` by command, ``wp/compare/__init__.py``'s ``METHODS``
by comparison method) hold their table as a literal tuple of ``(name, "wp.module", ...)`` entries: the
walk adds the chosen entry's module (aliases and ``-``/``_`` spellings alike) and leaves the others
out. A module that reads files of its own at run time (C sources it compiles) names them
in a module-level ``CODE_DATA`` tuple of paths relative to its directory (a directory stands for every
file under it): they are code inputs of every command whose closure holds the module.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the directory holding the package ``wp``
ENTRY = "wp.__main__"  # python -m wp
# file -> (its module-level table of (name, module, [aliases, ...]) entries, which choice picks the entry)
REGISTRIES = {"wp/cli.py": ("COMMANDS", "cmd"), "wp/compare/__init__.py": ("METHODS", "method")}


def module_file(name: str) -> Path | None:
    """``wp.a.b`` -> wp/a/b.py or wp/a/b/__init__.py (None: not a module of the package)."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _code_data(tree: ast.Module, path: Path) -> set[Path]:
    """The files a module's ``CODE_DATA = ("dir", "file", ...)`` names (relative to its directory)."""
    found: set[Path] = set()
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "CODE_DATA" for t in n.targets):
            for entry in ast.literal_eval(n.value):
                target = path.parent / entry
                found |= {p for p in target.rglob("*") if p.is_file() and "__pycache__" not in p.parts} \
                    if target.is_dir() else {target}
    return found


def _packages(name: str) -> list[str]:
    """``wp.a.b`` -> [wp, wp.a, wp.a.b]: importing a module first executes its packages."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _imports_of(node: ast.AST, package: str) -> set[str]:
    """The ``wp`` modules one import statement names (empty for any other node)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name.split(".")[0] == "wp"}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:
        parts = package.split(".")
        source = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if source.split(".")[0] != "wp":
        return set()
    return {source} | {f"{source}.{a.name}" for a in node.names if module_file(f"{source}.{a.name}")}


def _canonical(name: str) -> str:
    return name.replace("-", "_")


def registry(tree: ast.Module, table: str) -> tuple[tuple, ...]:
    """The literal table ``table = ((name, "wp.module", ...), ...)`` of a module."""
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == table for t in n.targets):
            return ast.literal_eval(n.value)
    raise ValueError(f"no literal {table} table")


def _imported(tree: ast.Module, module: str, is_package: bool, choice: tuple[str, str | None] | None) -> set[str]:
    """Names of the ``wp`` modules a file imports: every import statement in it, and in a registry file
    the module of the chosen entry (of every entry when the choice is None)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for n in ast.walk(tree):
        found |= _imports_of(n, package)
    if choice is not None:
        table, value = choice
        for name, target, *rest in registry(tree, table):
            aliases = rest[0] if rest and isinstance(rest[0], tuple) else ()
            if value is None or _canonical(value) in {_canonical(a) for a in (name, *aliases)}:
                found.add(target)
    return found


@lru_cache(maxsize=None)
def closure(command: str, method: str | None = None) -> tuple[str, ...]:
    """Sorted paths (relative to the directory holding ``wp``) of every ``wp`` source file that
    ``python -m wp <command>`` (``compare``: with ``--method method``) may import, and the files those
    modules name in ``CODE_DATA``."""
    choice = {"cmd": command, "method": method}
    todo, seen, data = [ENTRY], set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        rel = path.relative_to(ROOT).as_posix()
        picked = (REGISTRIES[rel][0], choice[REGISTRIES[rel][1]]) if rel in REGISTRIES else None
        tree = ast.parse(path.read_text(), rel)
        data |= _code_data(tree, path)
        deps = _imported(tree, name, path.name == "__init__.py", picked)
        todo += [p for dep in deps for p in _packages(dep)]
    files = {module_file(n) for n in seen if module_file(n)} | data
    return tuple(sorted(f.relative_to(ROOT).as_posix() for f in files))
