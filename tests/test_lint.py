"""`snakefmt --check workflow/` finds nothing to change, and Snakemake's linter finds only the lints
the README's "Lint" section justifies, each of them (issue 14)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.slow


def justified() -> set[str]:
    """The lint titles README "### Lint" justifies: its bullets' italic first sentences."""
    section = (REPO / "README.md").read_text().split("### Lint\n", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^- \*(.+?)\*", section, flags=re.M))


def test_snakefmt_has_nothing_to_change():
    snakefmt = Path(sys.executable).with_name("snakefmt")
    r = subprocess.run([str(snakefmt), "--check", "workflow/"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_remaining_lint_is_justified_in_the_readme(tmp_path):
    work = copy_workflow(tmp_path)
    shutil.copy(REPO / "config.yaml", work / "config.yaml")
    r = snakemake(work, "--lint", cores=False)
    lints = set(re.findall(r"^    \* (.+?):$", r.stdout + r.stderr, flags=re.M))
    assert lints, r.stdout[-2000:] + r.stderr[-2000:]  # the linter ran (and found what the README justifies)
    assert lints - justified() == set(), "lints the README does not justify"
    assert justified() - lints == set(), "README justifies lints that are gone: remove those lines"
