"""``python -m wp``'s process setting (wp/__main__.py): glibc keeps freed memory; numbers unchanged."""

import subprocess
import sys

import pytest

from conftest import REPO

PROBE = ("import runpy, sys; sys.argv = ['wp', '--help']; import wp.__main__ as m; "
         "print(m.keep_freed_memory())")


def _probe(env_value):
    import os

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("WP_MALLOC", None)
    if env_value is not None:
        env["WP_MALLOC"] = env_value
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keep_freed_memory_on_glibc_and_opt_out():
    assert _probe(None) == "True"
    assert _probe("default") == "False"


def test_cli_still_runs_through_main():
    out = subprocess.run([sys.executable, "-m", "wp", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and "quant_eval" in out.stdout
