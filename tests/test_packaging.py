"""The conda environment and pyproject declare the same dependencies; the workflow files parse."""

import re
import tomllib

import yaml

from conftest import REPO

CONDA_NAMES = {"pytorch": "torch"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ ]", spec.strip(), maxsplit=1)[0].lower()


def test_conda_env_matches_pyproject():
    deps = {_name(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    env = yaml.safe_load((REPO / "envs" / "wp.yaml").read_text())
    names = set()
    for d in env["dependencies"]:
        if isinstance(d, dict):
            names |= {_name(x) for x in d["pip"]}
        else:
            names.add(CONDA_NAMES.get(_name(d), _name(d)))
    assert deps <= names, f"missing from envs/wp.yaml: {deps - names}"
    assert names - deps <= {"python", "pip", "pytest"}


def test_every_rule_has_log_and_benchmark():
    text = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    rules = re.findall(r"^rule (\w+):", text, flags=re.M)
    assert {"prepare", "pretrain", "cluster", "wp_train", "table4"} <= set(rules)
    for block in re.split(r"^rule ", text, flags=re.M)[1:]:
        assert "    log:" in block and "    benchmark:" in block, block.splitlines()[0]
        assert "python -m wp" in block or "{PY}" in block
