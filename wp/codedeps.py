"""The source files of ``wp`` that a workflow command runs: its transitive import closure.

Every Snakemake rule runs ``python -m wp <command>``; its code inputs (editing one reruns the job) are
the files this module finds, never a hand-kept list. The walk is static (``ast``): it follows every
``import wp...`` / ``from wp... import ...`` of a file, at module level and inside functions alike,
and the package ``__init__.py`` files such an import executes. The two files that dispatch on a name
(``DISPATCH``: ``wp/cli.py`` on the command, ``wp/stages/compare.py`` on the method) are walked along
the chosen path only: other commands' ``if cmd == "...":`` branches, and functions that path never
calls, are left out. A module that reads files of its own at run time (C sources it compiles) names them
in a module-level ``CODE_DATA`` tuple of paths relative to its directory (a directory stands for every
file under it): they are code inputs of every command whose closure holds the module.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the directory holding the package ``wp``
ENTRY = "wp.__main__"  # python -m wp
# file -> (the variable whose comparisons with a string choose a branch per command / method, the
# functions other modules call)
DISPATCH = {"wp/cli.py": ("cmd", ("main",)), "wp/stages/compare.py": ("method", ("run",))}


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


def _chosen(test: ast.expr, var: str, value: str) -> bool | None:
    """For ``if var == "x":``: whether that branch is the one taken for ``value`` (None: another test)."""
    if (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == var
            and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq) and isinstance(test.comparators[0], ast.Constant)
            and isinstance(test.comparators[0].value, str)):
        return test.comparators[0].value == value
    return None


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


def _imported(tree: ast.Module, module: str, is_package: bool, dispatch: tuple[str, str | None, tuple] | None) -> set[str]:
    """Names of the ``wp`` modules a file imports: every import statement in it, or, in a dispatch file,
    those on the chosen path: module-level code, the entry functions and every module-level function
    they call by name, and of an ``if var == "x":`` chain only the chosen branch (a chosen branch that
    ends in ``return`` also ends the statements after it)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    if dispatch is None:
        for n in ast.walk(tree):
            found |= _imports_of(n, package)
        return found
    var, value, entries = dispatch
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    called: set[str] = set()

    def call(name: str) -> None:
        if name not in called:
            called.add(name)
            block(functions[name].body)

    def block(stmts: list) -> None:
        for stmt in stmts:
            chosen = _chosen(stmt.test, var, value) if isinstance(stmt, ast.If) and value is not None else None
            if chosen is False:
                block(stmt.orelse)
            elif chosen:
                block(stmt.body)
                if stmt.body and isinstance(stmt.body[-1], ast.Return):
                    return
            elif not (stmt in functions.values()):
                walk(stmt)

    def walk(n: ast.AST) -> None:
        found.update(_imports_of(n, package))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in functions:
            call(n.func.id)
        for _, field in ast.iter_fields(n):
            items = field if isinstance(field, list) else [field]
            if items and all(isinstance(i, ast.stmt) for i in items):
                block(items)
            else:
                for i in items:
                    if isinstance(i, ast.AST):
                        walk(i)

    block(tree.body)
    for name in entries:
        call(name)
    return found


@lru_cache(maxsize=None)
def closure(command: str, method: str | None = None) -> tuple[str, ...]:
    """Sorted paths (relative to the directory holding ``wp``) of every ``wp`` source file that
    ``python -m wp <command>`` (``compare``: with ``--method method``) may import, and the files those
    modules name in ``CODE_DATA``."""
    choice = {"cmd": command.replace("-", "_"), "method": method}
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
        dispatch = (DISPATCH[rel][0], choice[DISPATCH[rel][0]], DISPATCH[rel][1]) if rel in DISPATCH else None
        tree = ast.parse(path.read_text(), rel)
        data |= _code_data(tree, path)
        deps = _imported(tree, name, path.name == "__init__.py", dispatch)
        todo += [p for dep in deps for p in _packages(dep)]
    files = {module_file(n) for n in seen if module_file(n)} | data
    return tuple(sorted(f.relative_to(ROOT).as_posix() for f in files))
