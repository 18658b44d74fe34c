"""Every command-line option that mirrors a config setting has the schema's default (its one home,
wp.settings); every other optional option is declared command-line-only with its help text; every
command is one module with add_arguments/main, registered in wp.cli's table (issue 17)."""

import argparse
import importlib
import json

import pytest

from conftest import REPO
from wp import cli, settings


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sp for name, sp in action.choices.items()}


def problems(parser: argparse.ArgumentParser) -> list[str]:
    """Options of ``parser`` whose default is not the schema's, or that mirror no setting and are
    neither required nor declared command-line-only (with help)."""
    out = []
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) or not a.option_strings:
            continue
        key = getattr(a, "config_key", None)
        if key is not None:
            want = settings.default(key)
            got = a.default  # a --no-x flag stores the setting's value (true unless given) as a.dest
            if got != want or type(got) is not type(want):
                out.append(f"{a.option_strings[0]}: default {got!r}, schema {key} {want!r}")
            enum = settings.spec(key).get("enum")
            if enum is not None and list(a.choices or []) != enum:
                out.append(f"{a.option_strings[0]}: choices {a.choices}, schema {key} {enum}")
        elif not (a.required or (getattr(a, "cli_only", False) and a.help)):
            out.append(f"{a.option_strings[0]}: mirrors no setting, is not required and not declared cli_only")
    return out


FULL = cli.build_parser()
COMMANDS = subparsers(FULL)


def test_every_command_is_a_module_with_add_arguments_and_main():
    modules = {m for _, m, *_ in cli.COMMANDS}
    stages = {f"wp.stages.{p.stem}" for p in (REPO / "wp" / "stages").glob("*.py") if p.stem != "__init__"}
    assert modules == stages  # one module per command, no stage module without a command
    for module in modules:
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.main), module
    names = {n for n, _, aliases, _ in cli.COMMANDS for n in (n, *aliases)}
    assert names == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_default_is_the_schemas_or_the_option_is_required_or_cli_only(command):
    assert problems(COMMANDS[command]) == []


def test_top_level_options_and_what_the_issue_named():
    assert problems(FULL) == []
    opts = {c: {o: a for a in COMMANDS[c]._actions for o in a.option_strings} for c in COMMANDS}
    # the defaults that disagreed before: each is now the schema's, named by its key
    for command, option, key in [("quant_eval", "--calibration-images", "sweeps.calibration_images"),
                                 ("export", "--act-range", "sweeps.act_range"), ("act_train", "--act-range", "sweeps.act_range"),
                                 ("cluster", "--max-iter", "kmeans.max_iter"), ("cluster", "--backend", "kmeans.backend"),
                                 ("cluster", "--init", "kmeans.init"), ("cluster", "--tol", "kmeans.tol"),
                                 ("mcu_table7", "--cpi", "mcu.cpi"), ("mcu_figure8", "--wait-states", "mcu.wait_states"),
                                 ("table3", "--lut-bits", "sweeps.table3.lut_bits"), ("pretrain", "--threads", "threads")]:
        assert opts[command][option].config_key == key
        assert f"config key {key}" in opts[command][option].help
    assert settings.describe("sweeps.calibration_images") in opts["quant_eval"]["--calibration-images"].help


def test_the_check_finds_a_default_that_disagrees_and_an_undeclared_option():
    p = argparse.ArgumentParser()
    a = settings.setting(p, "--act-range", "sweeps.act_range")
    p.add_argument("--stray", default=3)
    settings.cli_only(p, "--documented", default=1, help="what it is for")
    p.add_argument("--needed", required=True)
    assert problems(p) == ["--stray: mirrors no setting, is not required and not declared cli_only"]
    a.default = "max"
    assert problems(p)[0] == "--act-range: default 'max', schema sweeps.act_range 'mse'"


def test_setting_reads_the_schema_by_key():
    assert settings.default("sweeps.calibration_images") == 512 and settings.default("kmeans.max_iter") == 300
    assert settings.default("compare.valueset")["temperature"] == {"start": 1.0, "decay": 0.97, "min": 1e-5}
    assert settings.with_defaults("compare.prune", {"rounds": 1})["rounds"] == 1
    with pytest.raises(KeyError, match="no setting"):
        settings.default("sweeps.calibration")
    with pytest.raises(KeyError, match="flag cannot mirror"):
        settings.setting(argparse.ArgumentParser(), "--ste", "sweeps.table6.ste")  # true by default: only --no-ste


def test_an_option_the_workflow_omits_takes_the_schema_default():
    args = FULL.parse_args(["act_train", "--data", "d", "--checkpoint", "c", "--network", "tinyconv", "--act-bits", "4",
                            "--out", "o", "--metrics", "m"])
    assert (args.ste, args.start, args.calibration_images, args.act_range) == (True, "latent", 512, "mse")
    assert FULL.parse_args(["act-train", "--data", "d", "--checkpoint", "c", "--network", "n", "--act-bits", "4",
                            "--no-ste", "--out", "o", "--metrics", "m"]).ste is False


@pytest.mark.parametrize("argv, message", [
    (["cluster", "--checkpoint", "c.pt", "--network", "tinyconv", "--k", "8", "--out", "p.h5", "--layer-selection", "[1]"],
     "--layer-selection must be a JSON object"),
    (["pretrain", "--data", "d.h5", "--network", "tinyconv", "--hparams", "{", "--out", "o.pt", "--metrics", "m.json"],
     "--hparams is not valid JSON"),
    (["pretrain", "--data", "d.h5", "--network", "tinyconv", "--hparams", json.dumps({"epoch": 1}), "--out", "o.pt",
      "--metrics", "m.json"], "unknown training setting 'epoch'"),
    (["prepare", "--dataset", "digits", "--out", "x.h5", "--options", "[]"], "--options must be a JSON object"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wp: error: ") and message in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_a_command_declares_only_its_own_arguments():
    assert cli.command_of(["--networks-from", "a.py", "wp-train", "--data", "x"]) == "wp-train"
    only = subparsers(cli.build_parser(["wp-train"]))
    assert len(only["wp_train"]._actions) > 1 and len(only["cluster"]._actions) == 1  # just -h
