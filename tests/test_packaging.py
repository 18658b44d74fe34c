"""The package installs on its own (non-editable: the config schema ships as package data) and the
workflow files parse."""

import json
import re
import shutil
import subprocess
import sys

import yaml

from conftest import REPO


def test_a_non_editable_install_validates_a_config(tmp_path):
    """``pip install .`` (no editable link to the checkout) gives a ``wp`` that validates config.yaml,
    run from outside the repository: the schema ships in the package."""
    src = tmp_path / "src"  # a copy, so that the build leaves no build/ or egg-info in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "wp", src / "wp", ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(site), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    shutil.rmtree(src)  # nothing of the source tree is left to read
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path)}

    def wp(*args):
        return subprocess.run([sys.executable, "-m", "wp", *args], capture_output=True, text=True, cwd=outside, env=env)

    where = subprocess.run([sys.executable, "-c", "import wp.config; print(wp.__file__, wp.config.SCHEMA_PATH)"],
                           capture_output=True, text=True, cwd=outside, env=env)
    module, schema = where.stdout.split()
    assert module.startswith(str(site)) and schema.startswith(str(site)), where.stdout  # the installed copy
    ok = wp("check-config", str(REPO / "config.yaml"))
    assert ok.returncode == 0, ok.stderr
    given = yaml.safe_load((REPO / "config.yaml").read_text())
    schema = yaml.safe_load((REPO / "wp" / "schemas" / "config.schema.yaml").read_text())["properties"]
    defaults = {k: v["default"] for k, v in schema.items()
                if "default" in v and k not in given and v.get("type") != "object"}
    assert defaults, "config.yaml sets every top-level key: nothing shows the defaults are filled in"
    shown = json.loads(ok.stdout)
    assert {k: shown[k] for k in defaults} == defaults and shown["threads"] == given["threads"]
    bad = outside / "bad.yaml"
    bad.write_text((REPO / "config.yaml").read_text() + "\nthreads: 0\n")
    refused = wp("check-config", str(bad))
    assert refused.returncode != 0 and "threads" in refused.stderr and "Traceback" not in refused.stderr


def test_no_conda_environment_is_claimed():
    """Every rule runs in the environment Snakemake runs in (the Makefile's venv or ``pip install``):
    no env file that nothing uses or tests."""
    assert not (REPO / "envs").exists()
    rules = "".join(p.read_text() for p in (REPO / "workflow").rglob("*.smk")) + (REPO / "workflow" / "Snakefile").read_text()
    assert "conda:" not in rules


def test_every_rule_has_log_and_benchmark():
    text = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    rules = re.findall(r"^rule (\w+):", text, flags=re.M)
    assert {"prepare", "pretrain", "cluster", "wp_train", "table4"} <= set(rules)
    for block in re.split(r"^rule ", text, flags=re.M)[1:]:
        assert "    log:" in block and "    benchmark:" in block, block.splitlines()[0]
        assert "python -m wp" in block or "{PY}" in block
