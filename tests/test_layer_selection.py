"""Per-network pooled-layer selection (config ``pooled_layers``): the paper config's z-vector counts,
the default rule kept, patterns and kinds validated, and the selection reaching the cluster job."""

import copy
import json
import re
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import yaml

from conftest import REPO, copy_workflow, stage_kw

from wp import WPError, config as wpconfig, models, pool, recipes

PAPER_YAML = REPO / "config" / "paper.yaml"


def paper_counts():
    cfg = wpconfig.load(PAPER_YAML)
    out = {}
    for dataset, nets in cfg["experiments"].items():
        for net in nets:
            model = models.create(net, **wpconfig.model_shape(dataset))
            layers = pool.pooled_layers(model, selection=wpconfig.layer_selection(cfg, net), network=net)
            mods = dict(model.named_modules())
            convs = sum(mods[n].weight.numel() // 8 for n in layers if isinstance(mods[n], nn.Conv2d))
            fcs = sum(mods[n].weight.numel() // 8 for n in layers if isinstance(mods[n], nn.Linear))
            out[net] = (convs, fcs)
    return out


def test_paper_config_pools_the_reference_sets():
    # reference-behaviour.md 3.1-3.6: 3x3 block convs of the ResNets (no downsample convs), the FC of
    # resnet_mlperf (64->10: 80 vectors) and tinyconv (1024->100: 12,800), every 1x1 conv of mobilenet_v2
    assert paper_counts() == {"resnet_10": (82944, 0), "resnet_14": (340992, 0), "resnet_mlperf": (21312, 80),
                              "tinyconv": (9600, 12800), "mobilenet_v2": (272992, 0)}


def test_default_rule_is_unchanged_without_a_selection():
    cfg = wpconfig.load(REPO / "config.yaml")
    assert cfg["pooled_layers"] == {}
    model = models.create("resnet_10", in_channels=3, num_classes=10, image_size=32)
    layers = pool.pooled_layers(model, selection=wpconfig.layer_selection(cfg, "resnet_10"))
    assert layers == pool.pooled_layers(model) and "layer2.0.downsample.0" in layers and "conv1" not in layers
    assert "fc" not in layers and "fc" in pool.pooled_layers(model, pool_fc=True)


def test_kinds_and_patterns_select_layers():
    model = models.create("resnet_14", in_channels=3, num_classes=10, image_size=32)
    only_1x1 = pool.pooled_layers(model, selection={"include_kinds": ["conv1x1"]})
    assert only_1x1 == ["layer2.0.downsample.0", "layer3.0.downsample.0"]
    by_kind = pool.pooled_layers(model, selection={"exclude_kinds": ["conv1x1"], "pool_fc": True})
    assert by_kind == pool.pooled_layers(model, selection={"exclude": ["*downsample*"], "pool_fc": True})
    assert by_kind[-1] == "fc" and len(by_kind) == 13
    assert pool.pooled_layers(model, selection={"include": ["layer3.*"], "exclude": ["*.conv2"]}) == [
        "layer3.0.conv1", "layer3.0.downsample.0", "layer3.1.conv1"]
    # the selection's pool_fc overrides the argument
    assert "fc" not in pool.pooled_layers(model, pool_fc=True, selection={"pool_fc": False})


@pytest.mark.parametrize("selection, what", [({"exclude": ["*shortcut*"]}, "pattern '*shortcut*'"),
                                             ({"include_kinds": ["conv5x5"]}, "kind 'conv5x5'")])
def test_a_selection_that_matches_nothing_names_the_layers(selection, what):
    model = models.create("resnet_10", in_channels=3, num_classes=10, image_size=32)
    with pytest.raises(WPError, match=rf"pooled_layers.resnet_10: {re.escape(what)} matches none .*layer1.0.conv1 \(conv3x3\).*fc \(linear\)"):
        pool.pooled_layers(model, selection=selection, network="resnet_10")


def test_config_validation_checks_selections_before_any_job():
    base = yaml.safe_load(PAPER_YAML.read_text())
    bad = copy.deepcopy(base)
    bad["pooled_layers"]["resnet_10"] = {"exclude": ["*shortcut*"]}  # mobilenet's name, not the ResNet's
    with pytest.raises(WPError, match=r"^config: pooled_layers.resnet_10: pattern '\*shortcut\*' matches none.*downsample"):
        wpconfig.validate(bad)
    bad = copy.deepcopy(base)
    bad["pooled_layers"]["resnet_10"] = {"include_kinds": ["linear"]}
    with pytest.raises(WPError, match=r"pooled_layers.resnet_10.include_kinds.0"):
        wpconfig.validate(bad)
    bad = copy.deepcopy(base)
    bad["pooled_layers"]["nosuchnet"] = {"pool_fc": True}
    with pytest.raises(WPError, match="nosuchnet"):
        wpconfig.validate(bad)
    bad = copy.deepcopy(base)
    bad["pooled_layers"]["tinyconv"] = {"include": ["fc1"]}  # only the FC, but pool_fc is off: nothing left
    with pytest.raises(WPError, match="leaves no layer"):
        wpconfig.validate(bad)


def test_paper_recipe_runs_in_fp32_and_fast_keeps_bf16():
    for stage in recipes.STAGES:
        for net in ("resnet_10", "mobilenet_v2", "tinyconv"):
            assert recipes.resolve({"recipe": "paper"}, stage, net)["amp"] == "off"
            assert recipes.resolve({"recipe": "fast"}, stage, net)["amp"] == "auto"


def test_networks_command_shows_the_configs_selection():
    r = subprocess.run([sys.executable, "-m", "wp", "networks", "--config", str(PAPER_YAML), "--layers", "resnet_14"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "| resnet_14 | built-in |" in r.stdout and "| 340992 |" in r.stdout and "*downsample*" in r.stdout
    assert "downsample" not in r.stdout.split("pooled layers (name, weight shape)")[1]


def test_selection_reaches_the_cluster_job_as_a_param(tmp_path):
    work = copy_workflow(tmp_path)
    cfg = {"experiments": {"digits": ["resnet_10"]}, "pool_sizes": [16], "recipe": "smoke",
           "pooled_layers": {"resnet_10": {"exclude": ["*downsample*"]}}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(work / "workflow" / "Snakefile"),
                        "--directory", str(work), "--configfile", str(work / "config.yaml"), "-n", "-p",
                        "results/digits/resnet_10/pool16.h5"], capture_output=True, text=True, cwd=work)
    assert r.returncode == 0, r.stderr
    # a params value of the rule: changing the selection reruns cluster and everything after it
    assert "--layer-selection '{\"exclude\": [\"*downsample*\"]}'" in r.stdout


def test_cluster_pools_exactly_the_selection(tmp_path):
    from wp import checkpoint
    from wp import poolfile
    from wp.stages import cluster

    torch.manual_seed(0)
    model = models.create("resnet_10", in_channels=1, num_classes=10, image_size=8)
    ckpt = tmp_path / "pretrained.pt"
    checkpoint.save(ckpt, model, network="resnet_10", dataset="digits",
                    model_args={"in_channels": 1, "num_classes": 10, "image_size": 8})
    out = tmp_path / "pool8.h5"
    res = cluster.run(ckpt, "resnet_10", 8, out, selection={"exclude": ["*downsample*"], "pool_fc": True},
                      **stage_kw("cluster", device="cpu", max_iter=5))
    read = poolfile.read(out)
    assert read["layers"] == [n for n in pool.pooled_layers(model, pool_fc=True) if "downsample" not in n]
    assert res["vectors"] == 82944 + 160  # 3x3 block convs + fc 128 -> 10: 1,280 weights
    assert json.loads(read["selection"]) == {"exclude": ["*downsample*"], "pool_fc": True}
