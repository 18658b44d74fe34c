"""Every snakemake command the README shows parses and plans a DAG (a dry run in a copy of the
repository, offline): a documented command that snakemake cannot even start is a broken promise."""

import re
import shlex
import shutil

import pytest

from conftest import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.slow


def readme_commands() -> list[str]:
    """The ``snakemake ...`` commands of the README: lines of its code blocks and inline code spans."""
    text = (REPO / "README.md").read_text()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        found += [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("snakemake ")]
    found += re.findall(r"`(snakemake [^`]+)`", text)
    return sorted(set(found))


# needs what a dry run cannot have: an HTML report of finished results, a cluster executor plugin;
# --lint exits 1 while lints remain (tests/test_lint.py judges them against the README)
NOT_DRY = ("--report", "--profile", "--lint")


def test_the_readme_shows_its_commands():
    commands = readme_commands()
    assert any("--configfile config/paper.yaml" in c for c in commands)
    assert any("examples/my_network.yaml" in c for c in commands)


@pytest.mark.parametrize("command", [c for c in readme_commands() if not any(flag in c for flag in NOT_DRY)])
def test_a_readme_command_plans_a_dag(command, tmp_path):
    work = copy_workflow(tmp_path)
    shutil.copy(REPO / "config.yaml", work / "config.yaml")
    for folder in ("config", "examples"):
        shutil.copytree(REPO / folder, work / folder)
    args = shlex.split(command)[1:]
    r = snakemake(work, "-n", *args, cores=False)
    assert r.returncode == 0, f"{command}\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
