"""wp.names is the one home of the name pattern and the result paths: the rules, common.smk and the
library read it, and nothing else spells them."""

import re

import pytest

from wp import compression, lut, names, pool
from wp.data import arrays
from wp.models import registry

from conftest import REPO


def test_paths_fill_the_given_fields_and_leave_the_others_as_wildcards():
    assert names.path(names.POOL, dataset="digits", network="tinyconv", k=8) == "digits/tinyconv/pool8.h5"
    assert names.path(names.COMPARE, method="sharing") == "{dataset}/{network}/compare/sharing/{setting}"
    assert names.path(names.EVAL, dataset="d", network="n", model=names.model(64, 4), abits=4, lbits="none") \
        == "d/n/eval/wp64_a4/a4_lutnone.json"
    with pytest.raises(KeyError, match="no field 'abits'"):
        names.path(names.POOLED, k=8, abits=4)  # a typo never passes silently


def test_model_names_and_their_checkpoints():
    for k, bits, ckpt in ((64, None, "d/n/wp64.pt"), (8, 3, "d/n/retrain/wp8_a3.pt")):
        name = names.model(k, bits)
        assert names.MODEL.fullmatch(name).groups() == (str(k), None if bits is None else str(bits))
        assert names.model_checkpoint("d", "n", name) == ckpt
    with pytest.raises(ValueError, match="not a pooled model name"):
        names.model_checkpoint("d", "n", "pretrained")


def test_the_library_reads_the_one_name_pattern_and_vector_length():
    assert registry.NAME is names.NAME and arrays.NAME is names.NAME
    assert lut.VECTOR is pool.VECTOR and compression.VECTOR is pool.VECTOR and compression.PATTERNS == lut.PATTERNS == 256


def test_no_other_file_spells_a_name_pattern_or_a_result_path():
    """The rules' result paths come from wp.names (via common.smk's ``result``), so no rule or library
    file writes one out; logs and benchmarks have their own folders and stay spelled in the rules."""
    files = [p for p in [*(REPO / "wp").rglob("*.py"), *(REPO / "workflow").rglob("*.smk"), REPO / "workflow" / "Snakefile"]
             if p.name != "names.py"]
    spelled = re.compile(r"\[a-z0-9_\]\+|RESULTS\}/\{\{|/pretrained\.|/pool\{|retrain/\{|f\"wp\{|/eval/\{")
    words = re.compile(r"#|print\(|WPError\(|LOGS|BENCH")  # comments, messages, log and benchmark paths
    found = [f"{p.relative_to(REPO)}:{i}" for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
             if spelled.search(line) and not words.search(line)]
    assert found == []
