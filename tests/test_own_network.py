"""A network of the user's own, registered from a file outside the package (``network_modules``,
``--networks-from``), runs through every stage like the built-in ones; a broken file is one line."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch

from wp import WPError, config, models, pool, recipes

from conftest import REPO, copy_workflow, planned, snakemake

EXAMPLE = REPO / "examples" / "my_network.py"


@pytest.fixture(autouse=True)
def registry_restored(monkeypatch):
    """Networks registered by a test are forgotten after it (the registry is per process)."""
    from wp.models import registry

    for name in ("_BUILDERS", "_ORIGIN", "_LOADED"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))


def test_the_example_registers_a_network_that_builds_for_any_dataset_shape():
    assert models.load_file(EXAMPLE) == ["vgg_small"]
    assert models.load_file(EXAMPLE) == ["vgg_small"]  # a second load imports nothing again
    assert models.origin("vgg_small") == EXAMPLE.resolve() and models.origin("tinyconv") is None
    for channels, side in ((1, 8), (1, 28), (3, 32)):
        net = models.create("vgg_small", in_channels=channels, num_classes=7, image_size=side)
        assert net(torch.zeros(2, channels, side, side)).shape == (2, 7)
    assert pool.pooled_layers(net) == ["2.0", "4.0"]  # the first conv stays float


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


HEAD = "import torch.nn as nn\nfrom wp.models import register\n"


@pytest.mark.parametrize("name, text, message", [
    ("syntax.py", HEAD + "def broken(:\n", "failed to import (SyntaxError"),
    ("raises.py", HEAD + "x = 1\nraise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here, line 4): fix that file"),
    ("empty.py", HEAD, "registers no network: decorate a builder with @wp.models.register"),
    ("camel.py", HEAD + "@register\ndef MyNet(*, in_channels, num_classes, image_size):\n    return nn.Identity()\n",
     "may hold only lowercase letters, digits and _"),
    ("clash.py", HEAD + "@register\ndef tinyconv(*, in_channels, num_classes, image_size):\n    return nn.Identity()\n",
     "network 'tinyconv' is registered twice"),
    ("args.py", HEAD + "@register\ndef two_args(channels, classes):\n    return nn.Identity()\n",
     "must accept the keyword arguments in_channels, num_classes and image_size"),
])
def test_a_broken_network_file_is_one_clear_line(tmp_path, name, text, message):
    with pytest.raises(WPError, match=None) as err:
        models.load_file(write(tmp_path, name, text))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_files_and_builders_that_return_no_module_are_refused(tmp_path):
    with pytest.raises(WPError, match="network module .*nowhere.py not found: fix the path under network_modules"):
        models.load_file(tmp_path / "nowhere.py")
    with pytest.raises(WPError, match="is not a .py file"):
        models.load_file(write(tmp_path, "nets.txt", HEAD))
    models.load_file(write(tmp_path, "numbers.py", HEAD + "@register\ndef just_a_number(**kw):\n    return 3\n"))
    with pytest.raises(WPError, match="returned int, not a torch.nn.Module"):
        models.create("just_a_number", in_channels=1, num_classes=10, image_size=8)


def test_config_loads_network_modules_and_gives_their_networks_the_generic_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = config.validate({"network_modules": ["examples/my_network.py"], "experiments": {"digits": ["vgg_small"]}})
    assert recipes.resolve(cfg, "pretrain", "vgg_small") == recipes.resolve(cfg, "pretrain", "tinyconv")
    with pytest.raises(WPError, match="network module missing.py not found"):
        config.validate({"network_modules": ["missing.py"], "experiments": {"digits": ["tinyconv"]}})
    with pytest.raises(WPError, match=r"unknown network 'resnet_99'.*network_modules"):
        config.validate({"experiments": {"digits": ["resnet_99"]}})


def wp_cli(*args):
    return subprocess.run([sys.executable, "-m", "wp", *args], capture_output=True, text=True, cwd=REPO)


def test_the_cli_trains_a_network_of_ones_own_only_with_its_file(digits_h5, tmp_path):
    hp = json.dumps({"epochs": 1, "batch_size": 32, "train_subset": 200, "test_subset": 100})
    out = tmp_path / "pretrained.pt"
    train = ["pretrain", "--data", str(digits_h5), "--network", "vgg_small", "--hparams", hp, "--device", "cpu",
             "--threads", "1", "--out", str(out), "--metrics", str(tmp_path / "pretrained.json")]
    r = wp_cli("--networks-from", str(EXAMPLE), *train)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "pretrained.json").read_text())["network"] == "vgg_small"
    r = wp_cli("cluster", "--checkpoint", str(out), "--network", "vgg_small", "--k", "8", "--out", str(tmp_path / "p.h5"))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "unknown network 'vgg_small'" in r.stderr and not (tmp_path / "p.h5").exists()


def test_the_networks_command_shows_what_pools_would_do_to_each_network():
    r = wp_cli("--networks-from", str(EXAMPLE), "networks", "--channels", "1", "--image-size", "28", "--layers")
    assert r.returncode == 0, r.stderr
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in r.stdout.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"network", "vgg_small", "tinyconv", "resnet_14", "mobilenet_v2"}
    header = rows["network"]
    own = dict(zip(header, rows["vgg_small"]))
    assert own["source"] == str(EXAMPLE.resolve()) and own["z_vectors"] == str((32 * 2 + 64 * 4) * 9)
    assert dict(zip(header, rows["resnet_14"]))["z_vectors"] == "346112"  # every conv but the first, 3x3 and 1x1
    assert "  4.0 (64, 32, 3, 3)" in r.stdout.splitlines()
    r = wp_cli("networks", "vgg_small")
    assert r.returncode == 2 and "unknown network 'vgg_small'" in r.stderr and "--networks-from" in r.stderr


CONFIG = {
    "recipe": "smoke",
    "device": "cpu",
    "threads": 1,
    "network_modules": ["my_network.py"],
    "experiments": {"digits": ["vgg_small"]},
    "pool_sizes": [8],
    "hparams": {stage: {"epochs": 1, "batch_size": 32, "train_subset": 400, "test_subset": 100}
                for stage in ("pretrain", "wp_train", "act_train", "ternary")},
    "compare": {"methods": ["wp", "ternary"], "ternary": {"activations": [False]}},
    "sweeps": {"pool_size": 8, "table5": {"lut_bits": [8]}, "table6": {"act_bits": [8, 4], "retrain_bits": [4]}},
}


@pytest.mark.slow
def test_the_workflow_runs_a_network_of_ones_own_and_reruns_only_it_when_its_file_changes(tmp_path):
    work = copy_workflow(tmp_path)
    own = work / "my_network.py"
    shutil.copy(EXAMPLE, own)
    r = snakemake(work, "all", "tables/compare.csv", config=CONFIG)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    t4 = pd.read_csv(work / "tables" / "table4.csv")
    assert list(t4["network"]) == ["vgg_small"] and 0 < t4["wp8"].iloc[0] <= 100
    t6 = pd.read_csv(work / "tables" / "table6.csv")
    assert {"a8", "a4", "a4_retrained"} <= set(t6.columns) and t6["a8"].notna().all()
    cmp = pd.read_csv(work / "tables" / "compare.csv")
    assert {"wp", "ternary"} <= set(cmp["method"])

    both = {**CONFIG, "experiments": {"digits": ["vgg_small", "tinyconv"]}}
    before = planned(work, both, "tables/table4.csv")
    own.write_text(own.read_text() + "\n# an edit\n")
    after = planned(work, both, "tables/table4.csv")
    assert all("network=vgg_small" not in w for w in before["pretrain"])
    assert [w for w in after["pretrain"] if "vgg_small" in w] and len(after["pretrain"]) == 2
    assert [w for w in after["cluster"] if "tinyconv" in w] == [w for w in before["cluster"] if "tinyconv" in w]
