"""Code inputs come from each command's import closure (wp.codedeps), checked against Python's own
import machinery, and every rule's code inputs are that closure (issue 14)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, copy_workflow, snakemake
from wp import cli, codedeps, compare

# every command (one module each, wp/stages/<command>.py, in wp.cli's table), and the comparison methods
COMMANDS = [name for name, *_ in cli.COMMANDS]
METHODS = compare.names()

# In one fresh interpreter, for each stage module in turn: forget every wp module, import wp.cli (what
# `python -m wp` runs first) and the stage module, and list the wp source files Python actually
# loaded. A module imported at module level anywhere in that chain is loaded, so it must be in the
# closure (which also holds the imports inside functions).
LOADED = """
import importlib, json, sys
out = {}
for stage in sys.argv[1:]:
    for name in [n for n in sys.modules if n.split('.')[0] == 'wp']:
        del sys.modules[name]
    importlib.import_module('wp.cli')
    importlib.import_module(stage)
    out[stage] = sorted(m.__file__ for n, m in list(sys.modules.items()) if n.split('.')[0] == 'wp' and getattr(m, '__file__', None))
print(json.dumps(out))
"""
CASES = [c for c in COMMANDS if c != "compare"] + [f"compare:{m}" for m in METHODS]


def stage_of(case: str) -> str:
    cmd, _, method = case.partition(":")
    return dict(compare.METHODS)[method] if method else dict((n, m) for n, m, *_ in cli.COMMANDS)[cmd]


@pytest.fixture(scope="module")
def loaded() -> dict[str, set[str]]:
    stages = sorted({stage_of(c) for c in CASES})
    r = subprocess.run([sys.executable, "-c", LOADED, *stages], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return {s: {Path(f).resolve().relative_to(REPO).as_posix() for f in files} for s, files in json.loads(r.stdout).items()}


@pytest.mark.parametrize("case", CASES)
def test_closure_holds_every_module_python_loads(case, loaded):
    cmd, _, method = case.partition(":")
    closure = set(codedeps.closure(cmd, method or None))
    missing = loaded[stage_of(case)] - closure
    assert not missing, f"{case}: {sorted(missing)} are imported but not code inputs"
    assert f"{stage_of(case).replace('.', '/')}.py" in closure and "wp/cli.py" in closure


def test_closure_follows_lazy_imports_and_the_issues_examples():
    # table3's lut_tables column uses wp.lut and wp.quant (imported inside functions)
    assert {"wp/lut.py", "wp/quant.py", "wp/compression.py"} <= set(codedeps.closure("table3"))
    # pretrain reads the dataset through wp.data: every dataset module registers itself on import
    assert {f"wp/data/{p.name}" for p in (REPO / "wp" / "data").glob("*.py")} <= set(codedeps.closure("pretrain"))
    # wp_train reads the pool file through wp.poolfile, not the cluster stage: k-means is no code of its
    assert "wp/kmeans.py" in codedeps.closure("cluster") and "wp/kmeans.py" not in codedeps.closure("wp_train")
    assert "wp/poolfile.py" in codedeps.closure("wp_train")
    assert "wp/sweeps.py" in codedeps.closure("quant_eval")  # imported by the quant_eval stage only
    # the C sources wp.mcu compiles (its CODE_DATA) are code inputs of the mcu commands, not of the others
    runtime = {f"wp/runtime_c/{p.name}" for p in (REPO / "wp" / "runtime_c").iterdir() if p.is_file()}
    assert runtime and runtime <= set(codedeps.closure("mcu_figure7"))
    assert not runtime & set(codedeps.closure("table3"))


def test_other_commands_and_methods_are_left_out():
    prepare = set(codedeps.closure("prepare"))
    assert "wp/stages/prepare.py" in prepare and "wp/data/digits.py" in prepare
    # prepare loads no network of the user's, never parses --hparams, imports no other stage
    assert not {"wp/train.py", "wp/models/__init__.py", "wp/stages/pretrain.py", "wp/sweeps.py"} & prepare
    assert "wp/sweeps.py" not in codedeps.closure("table4")
    prune = set(codedeps.closure("compare", "prune"))
    assert "wp/methods/prune.py" in prune and not {"wp/methods/sharing.py", "wp/compare/sharing.py"} & prune
    # a command's closure holds its own stage module, never another's
    assert {p for p in prune if p.startswith("wp/stages/")} == {"wp/stages/__init__.py", "wp/stages/compare.py"}
    assert set(codedeps.closure("wp-train")) == set(codedeps.closure("wp_train"))  # aliases alike
    assert "wp/methods/sharing.py" in codedeps.closure("compare", "sharing")


def test_relative_imports_and_from_package_import_submodule(tmp_path, monkeypatch):
    pkg = tmp_path / "wp"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("from wp.cli import main\n")
    (pkg / "cli.py").write_text("import importlib\nCOMMANDS = (('a', 'wp.sub', (), ''), ('b-x', 'wp.sub.b', ('b',), ''))\n"
                                "def main(name):\n    importlib.import_module(dict((c[0], c[1]) for c in COMMANDS)[name])\n")
    (pkg / "sub" / "__init__.py").write_text("from . import helper\n")
    (pkg / "sub" / "helper.py").write_text("def f():\n    from .deep import g\n")
    (pkg / "sub" / "deep.py").write_text("")
    (pkg / "sub" / "b.py").write_text("import wp.other\n")
    (pkg / "other.py").write_text("")
    monkeypatch.setattr(codedeps, "ROOT", tmp_path)
    codedeps.closure.cache_clear()
    try:
        a, b = set(codedeps.closure("a")), set(codedeps.closure("b"))
    finally:
        codedeps.closure.cache_clear()
    base = {"wp/__init__.py", "wp/__main__.py", "wp/cli.py"}
    sub = {"wp/sub/__init__.py", "wp/sub/helper.py", "wp/sub/deep.py"}
    assert a == base | sub
    assert b == base | sub | {"wp/sub/b.py", "wp/other.py"}


# every rule of the workflow, on a network of one's own (its file is a code input too)
ALL_RULES = {
    "recipe": "smoke", "device": "cpu", "threads": 1, "network_modules": ["my_network.py"],
    "experiments": {"digits": ["tinyconv", "vgg_small"]}, "pool_sizes": [8],
    "sweeps": {"pool_size": 8, "table5": {"lut_bits": [8]}, "table6": {"act_bits": [8], "retrain_bits": [4]}},
    "compare": {"networks": ["tinyconv"], "prune": {"sparsities": [0.5]}, "ternary": {"activations": [False]},
                "valueset": {"sets": ["pm1"]}, "sharing": {"budgets": [0.99]}},
}


@pytest.mark.slow
def test_every_rules_code_inputs_are_its_commands_import_closure(tmp_path):
    work = copy_workflow(tmp_path)
    (work / "my_network.py").write_text((REPO / "examples" / "my_network.py").read_text())
    r = snakemake(work, "-n", "-p", "--forceall", "all", "all_exports", config=ALL_RULES)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    seen = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", r.stdout):
        m = re.match(r"(?:local)?rule (\w+):", block)
        shell = re.search(r" -m wp (?:--networks-from \S+ )*(\w+)(?: --method (\w+))?", block)
        if not m or not shell:
            continue
        inputs = re.search(r"^\s+input: (.*)$", block, re.M).group(1).split(", ")
        code = {f for f in inputs if f.endswith(".py")}
        network = re.search(r"network=(\w+)", block)
        own = {"my_network.py"} if network is None or network.group(1) == "vgg_small" else set()
        expected = set(codedeps.closure(shell.group(1), shell.group(2)))
        if "wp/models/__init__.py" in expected and shell.group(1) != "prepare":
            expected |= own
        assert code == expected, f"rule {m.group(1)}: {sorted(code ^ expected)}"
        assert all(not Path(f).is_absolute() for f in code)
        seen.add(m.group(1))
    assert seen >= {"prepare", "pretrain", "cluster", "wp_train", "table4", "plots", "quant_eval", "act_train", "table3",
                    "table5", "table6", "sweep_plots", "export", "compare_train", "compare_sharing", "compare_table"}
