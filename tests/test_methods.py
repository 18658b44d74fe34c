"""The comparison methods' core math, their storage counted by hand, and their stages on real data."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from wp.settings import default
from wp import WPError, checkpoint, compression, config, models, selection
from wp.methods import layers as layer_choice, prune, sharing, ternary, valueset
from wp.stages import compare
from wp.train import Tensors, fit, hparams

# the value-set and sharing settings the schema declares (compare.valueset / compare.sharing)
_T = default("compare.valueset.temperature")
VS = {"t0": _T["start"], "decay": _T["decay"], "t_min": _T["min"], "sharpness": default("compare.valueset.sharpness")}
SHARING_ITER = default("compare.sharing.max_iter")


def tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, bias=False),
                         nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4))


def random_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Tensors(torch.randint(0, 256, (n, 1, 6, 6), generator=g, dtype=torch.uint8), torch.randint(0, 4, (n,), generator=g))


def train_a_little(model, epochs=2, on_step=None, **hp):
    return fit(model, random_data(), hparams({"epochs": epochs, "batch_size": 16, "lr": 0.1, "momentum": 0.9,
                                              "weight_decay": 5e-3, "schedule": "constant", **hp}),
               seed=0, augment={}, log=lambda s: None, on_step=on_step)


# --- layer choice -------------------------------------------------------------------------------

@pytest.mark.parametrize("net", models.names())
def test_first_conv_and_classifier_are_found_in_every_network(net):
    m = models.create(net, in_channels=1, num_classes=10, image_size=28)
    chosen = layer_choice.select(m, keep_first=True, keep_last=True)
    assert layer_choice.first_conv(m) == "conv1" and layer_choice.first_conv(m) not in chosen
    assert layer_choice.classifier(m) in ("fc", "fc1", "linear") and layer_choice.classifier(m) not in chosen
    assert len(chosen) == len(compression.weight_layers(m)) - 2


# --- pruning ------------------------------------------------------------------------------------

def test_schedule_grows_to_the_target():
    s = prune.schedule(0.9, 3)
    assert s[-1] == pytest.approx(0.9) and s == sorted(s)
    assert 1 - s[0] == pytest.approx(0.1 ** (1 / 3))


def test_threshold_is_q_times_each_layers_std():
    m = tiny()
    names = list(compression.weight_layers(m))
    mods = dict(m.named_modules())
    q = prune.quality([mods[n].weight for n in names], 0.6)
    masks = prune.masks(m, names, q)
    for n in names:
        w = mods[n].weight.detach()
        assert torch.equal(masks[n].bool(), w.abs() > q * w.std())
    kept = sum(int(masks[n].sum()) for n in names)
    total = sum(mods[n].weight.numel() for n in names)
    assert abs((1 - kept / total) - 0.6) <= 1 / total


def _pruned(m, sparsity):
    names = list(compression.weight_layers(m))
    q = prune.quality([dict(m.named_modules())[n].weight for n in names], sparsity)
    masks = prune.masks(m, names, q)
    prune.MaskKeeper(m, masks).apply()
    return names, masks


def test_pruned_weights_stay_zero_through_momentum_and_weight_decay():
    m = tiny()
    names, masks = _pruned(m, 0.7)
    keeper = prune.MaskKeeper(m, masks)
    train_a_little(m, on_step=keeper.apply)
    mods = dict(m.named_modules())
    for n in names:
        w = mods[n].weight.detach()
        assert torch.all(w[masks[n] == 0] == 0)
        assert torch.all(w[masks[n] == 1] != 0)
    assert prune.sparsity_of(m, names) == pytest.approx(0.7, abs=0.01)


def test_without_the_mask_callback_pruned_weights_come_back():
    m = tiny()
    names, masks = _pruned(m, 0.7)
    train_a_little(m)
    revived = sum(int((dict(m.named_modules())[n].weight.detach()[masks[n] == 0] != 0).sum()) for n in names)
    assert revived > 0  # what the callback above prevents


def test_mask_keeper_zeroes_the_optimizer_state():
    m = tiny()
    names, masks = _pruned(m, 0.5)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(torch.rand(4, 1, 6, 6)).sum().backward()
    opt.step()
    prune.MaskKeeper(m, masks).apply(opt)
    w = m[0].weight
    assert torch.all(opt.state[w]["momentum_buffer"][masks["0"] == 0] == 0)


def test_prune_footprint_by_hand():
    m = tiny()
    names, _ = _pruned(m, 0.5)
    nnz = {n: int((dict(m.named_modules())[n].weight != 0).sum()) for n in names}
    fp = prune.footprint(m, names)
    # conv0: 72 weights, 8 bias; conv3: 576 weights; fc: 128 weights, 4 bias
    for base, b in (("fp32", 32), ("int8", 8)):
        expect = (72 + 576 + 128) * 1 + sum(nnz.values()) * b + (8 + 4) * b
        assert fp.bits(base) == expect
    assert fp.params == 72 + 8 + 576 + 128 + 4
    assert prune.han_ratio(m) == pytest.approx(fp.params / (sum(nnz.values()) + 12))


# --- ternary ------------------------------------------------------------------------------------

def test_ternarize_uses_twn_threshold_and_scale():
    w = torch.tensor([-1.0, -0.2, 0.05, 0.3, 0.9, 0.0])
    codes, alpha, delta = ternary.ternarize(w)
    assert float(delta) == pytest.approx(0.7 * float(w.abs().mean()))
    assert codes.tolist() == [-1, 0, 0, 1, 1, 0]
    assert float(alpha) == pytest.approx((1.0 + 0.3 + 0.9) / 3)


def test_ternary_layers_take_exactly_three_levels_after_training():
    m = tiny()
    layers = layer_choice.select(m, keep_first=True, keep_last=True)
    assert layers == ["3"]
    ternary.attach(m, layers, activations=True)
    train_a_little(m)
    ternary.bake(m)
    w = m[3].weight.detach()
    levels = torch.unique(w)
    assert len(levels) == 3 and levels[1] == 0 and levels[0] == -levels[2]
    assert len(torch.unique(m[0].weight.detach())) > 3  # the first conv stays float


def test_ternary_gradients_are_straight_through():
    w = torch.randn(5, requires_grad=True)
    ternary.TernaryWeight()(w).backward(torch.arange(5.0))
    assert torch.equal(w.grad, torch.arange(5.0))
    x = torch.tensor([-1.5, -0.7, -0.2, 0.4, 0.6, 2.0], requires_grad=True)
    y = ternary.ternary_activation(x)
    assert y.tolist() == [-1, -1, 0, 0, 1, 1]
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 0]


def test_ternary_footprint_by_hand():
    m = tiny()
    fp = ternary.footprint(m, ["3"])
    assert fp.bits("fp32") == (72 + 8 + 128 + 4) * 32 + 576 * 2 + 32
    assert fp.bits("int8") == (72 + 8 + 128 + 4) * 8 + 576 * 2 + 8


# --- value-set search ---------------------------------------------------------------------------

def test_searched_weights_lie_in_the_value_set():
    m = tiny()
    vals = valueset.values("pow2_4")
    (p,) = valueset.attach(m, ["3"], vals, **VS)
    scale = float(p.scale)
    before = valueset.choices(m, ["3"])["3"]
    train_a_little(m, on_step=lambda opt: p.advance(4), lr=50.0)  # a learning rate that moves the logits
    after = valueset.choices(m, ["3"])["3"]
    assert (before != after).any()  # the search changed some choices
    assert float(p.temperature) == pytest.approx(0.97 ** (int(p.steps) // 4)) and int(p.steps) == 8
    valueset.bake(m)
    w = m[3].weight.detach()
    allowed = scale * vals
    assert torch.all((w[..., None] == allowed).any(-1))
    assert torch.equal(w, allowed[after])


def test_valueset_forward_is_hard_and_gradient_soft():
    vals = valueset.values("pm1_half")
    p = valueset.ValueSetWeight(vals, scale=0.5, **{**VS, "t0": 2.0})
    logits = torch.randn(3, 4, requires_grad=True)
    w = p(logits)
    assert torch.equal(w.detach(), 0.5 * vals[logits.argmax(-1)])
    w.sum().backward()
    ref = logits.detach().clone().requires_grad_(True)
    (0.5 * (torch.softmax(ref / 2.0, -1) @ vals)).sum().backward()
    assert torch.allclose(logits.grad, ref.grad)


def test_warm_start_picks_the_nearest_value_and_sharpness_zero_is_uniform():
    vals = valueset.values("pm1_half")
    w = torch.tensor([0.9, -0.4, 0.2, -0.8])
    logits = valueset.ValueSetWeight(vals, scale=1.0, **VS).right_inverse(w)
    assert vals[logits.argmax(-1)].tolist() == [1.0, -0.5, 0.5, -1.0]
    flat = valueset.ValueSetWeight(vals, scale=1.0, **{**VS, "sharpness": 0.0}).right_inverse(w)
    assert torch.allclose(flat, torch.full_like(flat, np.log(0.25)), atol=1e-5)


def test_fit_scale_beats_other_scales():
    w = torch.randn(1000)
    vals = valueset.values("pm1")
    s = valueset.fit_scale(w, vals)

    def err(scale):
        return float(((w - scale * vals[valueset.nearest(w / scale, vals)]) ** 2).sum())

    assert all(err(s) <= err(t) for t in (0.5 * s, 0.8 * s, 1.25 * s, float(w.abs().mean()) * 1.5))
    assert s == pytest.approx(float(w.abs().mean()), rel=0.05)  # for {±1} the optimum is mean|w|


def test_valueset_footprint_by_hand():
    m = tiny()
    fp = valueset.footprint(m, ["3"], 8)
    assert fp.bits("fp32") == (72 + 8 + 128 + 4) * 32 + 576 * 3 + 32 + 8 * 32
    assert fp.bits("int8") == (72 + 8 + 128 + 4) * 8 + 576 * 3 + 8 + 8 * 8


def test_unknown_value_set_is_refused():
    with pytest.raises(WPError, match="unknown value set 'pm3': use one of pm1"):
        valueset.values("pm3")


# --- retraining-free sharing --------------------------------------------------------------------

@pytest.mark.parametrize("k", [2, 4, 16])
def test_sharing_uses_at_most_k_values(k):
    w = torch.randn(32, 16, 3, 3)
    shared, used = sharing.share(w, k, SHARING_ITER)
    assert shared.shape == w.shape and len(torch.unique(shared)) == used <= k


def test_kmeans_1d_finds_well_separated_clusters():
    w = torch.cat([torch.full((10,), -1.0), torch.full((5,), 0.25), torch.full((7,), 2.0)])
    centroids, labels = sharing.kmeans_1d(w[torch.randperm(22)], 3, SHARING_ITER)
    assert centroids.tolist() == [-1.0, 0.25, 2.0]
    shared, used = sharing.share(w, 3, SHARING_ITER)
    assert torch.equal(shared, w) and used == 3


def test_greedy_search_respects_the_budget():
    # three layers; the true accuracy drop of a choice is the sum of its per-layer drops (k=0: float)
    drops = {"a": {0: 0, 8: 0.1, 4: 0.3, 2: 2.0}, "b": {0: 0, 8: 0.2, 4: 0.6, 2: 5.0}, "c": {0: 0, 8: 0.0, 4: 0.0, 2: 0.4}}
    sizes = {"a": 1000, "b": 4000, "c": 100}
    base, budget = 90.0, 0.99

    def opts(name):
        sweep = [{"layer": name, "k": k, "k_used": k, "val_top1": base - drops[name][k]} for k in (8, 4, 2)]
        return sharing.candidates(sweep, name, base, budget)

    options = {n: opts(n) for n in drops}
    assert [o.k for o in options["a"]] == [0, 8, 4]  # k=2 alone loses 2 points > 0.9: no candidate
    assert [o.k for o in options["c"]] == [0, 8, 4, 2]

    def score(choice):
        return base - sum(drops[n][c.k] for n, c in choice.items())

    choice, val, evaluations = sharing.greedy(options, sizes, base, budget, score, resolution=0.1)
    assert val == score(choice) >= budget * base
    assert all(c.k > 0 for c in choice.values())  # every layer got shared within the budget
    assert evaluations <= sum(len(o) - 1 for o in options.values())
    tight, tight_val, _ = sharing.greedy(options, sizes, base, 0.999, score, resolution=0.1)
    assert tight_val == score(tight) >= 0.999 * base
    assert any(c.k == 0 for c in tight.values())  # a budget of 0.09 points keeps some layer float


def test_sharing_footprint_by_hand():
    m = tiny()
    fp = sharing.footprint(m, {"0": 4, "3": 16, "8": 3})
    assert fp.bits("fp32") == 72 * 2 + 4 * 32 + 576 * 4 + 16 * 32 + 128 * 2 + 3 * 32 + (8 + 4) * 32
    assert fp.bits("int8") == 72 * 2 + 4 * 8 + 576 * 4 + 16 * 8 + 128 * 2 + 3 * 8 + (8 + 4) * 8


def test_validation_images_are_training_images_pretraining_did_not_use():
    labels = np.repeat(np.arange(10), 50)
    used = np.flatnonzero(np.arange(500) % 5 < 3)  # the 300 images a float network was fitted on
    idx, seen = selection.sharing_validation(len(labels), used, 100, seed=0)
    assert not seen and len(idx) == 100 and not set(idx) & set(used) and len(set(idx)) == 100
    idx, seen = selection.sharing_validation(len(labels), np.arange(500), 100, seed=0)  # fitted on all: seen
    assert seen and len(idx) == 100 and len(set(idx)) == 100


# --- the stages on the digits data ---------------------------------------------------------------

HP = {"epochs": 1, "batch_size": 32, "lr": 0.01, "schedule": "cosine", "train_subset": 400}


def test_stages_on_digits(digits_h5, trained_tinyconv, tmp_path):
    pre_json = trained_tinyconv.parent / "pretrained.json"
    rows = {}
    for method, setting, options in (("prune", "0.8", {"rounds": 2}), ("ternary", "weights_acts", {}),
                                     ("valueset", "pm1", {}), ("sharing", "0.99", {"clusters": [2, 4, 16], "val_images": 100})):
        out = tmp_path / f"{method}.pt"
        rows[method] = compare.run(method, setting, digits_h5, trained_tinyconv, "tinyconv", hparams(HP), options, out,
                                   tmp_path / f"{method}.json", pretrain_metrics=pre_json, seed=0, device="cpu")
        assert json.loads((tmp_path / f"{method}.json").read_text())["setting"] == setting
        assert checkpoint.load(out, network="tinyconv", kind="compressed")["method"] == method
    float_top1 = json.loads(pre_json.read_text())["test_top1"]
    for method, m in rows.items():
        assert m["float_top1"] == pytest.approx(float_top1)
        assert m["scored_on"] == json.loads(pre_json.read_text())["scored_on"], method  # the float network's test images
        assert m["test_top1"] > 30, method  # above chance (10 classes) after compression
        assert m["footprint"]["ratio_fp32"] > 1 and m["footprint"]["ratio_int8"] > 1
    assert rows["prune"]["sparsity"] == pytest.approx(0.8, abs=0.001) and rows["prune"]["retrain_epochs"] == 2
    sd = checkpoint.load(tmp_path / "prune.pt")["state_dict"]
    assert abs(sum(int((sd[f"{n}.weight"] == 0).sum()) for n in ("conv1", "conv2", "conv3", "fc1"))
               / sum(sd[f"{n}.weight"].numel() for n in ("conv1", "conv2", "conv3", "fc1")) - 0.8) < 0.001
    sh = rows["sharing"]
    assert sh["val_top1"] >= 0.99 * sh["float_val_top1"] and sh["retrain_epochs"] == 0
    sd = checkpoint.load(tmp_path / "sharing.pt")["state_dict"]
    for n, k in sh["layer_clusters"].items():
        if k:
            assert len(torch.unique(sd[f"{n}.weight"])) <= k <= 16


def test_sharing_validates_on_training_images_pretraining_did_not_fit(digits_h5, trained_tinyconv, tmp_path):
    ckpt = checkpoint.load(trained_tinyconv)
    fitted = torch.arange(0, len(ckpt["selection"]["train"]), 3)  # as if pretraining had fitted a third of them
    ckpt["selection"] = {**ckpt["selection"], "train": fitted}
    torch.save(ckpt, tmp_path / "pre.pt")
    m = compare.run("sharing", "0.9", digits_h5, tmp_path / "pre.pt", "tinyconv", {}, {"clusters": [4], "val_images": 200},
                    tmp_path / "s.pt", tmp_path / "s.json", pretrain_metrics=trained_tinyconv.parent / "pretrained.json",
                    seed=0, device="cpu")
    val = checkpoint.load(tmp_path / "s.pt")["selection"]["val"]
    assert m["validation_seen_in_training"] is False and m["val_images"] == len(val) == 200
    assert not set(val.tolist()) & set(fitted.tolist())
    del ckpt["selection"]
    torch.save(ckpt, tmp_path / "old.pt")
    with pytest.raises(WPError, match=r"records no data selection .*rerun pretrain \(snakemake --forcerun pretrain\)"):
        compare.run("sharing", "0.9", digits_h5, tmp_path / "old.pt", "tinyconv", {}, {"clusters": [4], "val_images": 200},
                    tmp_path / "o.pt", tmp_path / "o.json", pretrain_metrics=trained_tinyconv.parent / "pretrained.json",
                    seed=0, device="cpu")
    assert not (tmp_path / "o.pt").exists()


def test_same_seed_same_numbers(digits_h5, trained_tinyconv, tmp_path):
    a, b = (compare.run("ternary", "weights", digits_h5, trained_tinyconv, "tinyconv", hparams(HP), {}, tmp_path / f"{x}.pt",
                        tmp_path / f"{x}.json", seed=3, device="cpu") for x in "ab")
    assert a["test_top1"] == b["test_top1"] and a["history"][0]["loss"] == b["history"][0]["loss"]
    sa, sb = checkpoint.load(tmp_path / "a.pt")["state_dict"], checkpoint.load(tmp_path / "b.pt")["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("method,setting,match", [
    ("prune", "1.5", "prune sparsity 1.5 is out of range"),
    ("prune", "most", "prune setting 'most' is not a number"),
    ("ternary", "binary", "ternary setting 'binary' is unknown: use weights or weights_acts"),
    ("valueset", "pm3", "unknown value set 'pm3'"),
    ("sharing", "1.2", "sharing accuracy budget 1.2 is out of range"),
    ("lasso", "1", "unknown comparison method 'lasso'"),
])
def test_bad_settings_are_one_line_errors(digits_h5, trained_tinyconv, tmp_path, method, setting, match):
    with pytest.raises(WPError, match=match) as err:
        compare.run(method, setting, digits_h5, trained_tinyconv, "tinyconv", hparams(HP), {}, tmp_path / "x.pt",
                    tmp_path / "x.json", pretrain_metrics=trained_tinyconv.parent / "pretrained.json", seed=0, device="cpu")
    assert "\n" not in str(err.value) and not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("bad,match", [
    ({"compare": {"prune": {"sparsities": [1.0]}}}, r"compare.prune.sparsities.0: 1.0 is greater than or equal to the maximum of 1"),
    ({"compare": {"networks": ["resnet_14"]}, "experiments": {"digits": ["tinyconv"]}}, r"compare.networks: 'resnet_14' is in no experiment"),
    ({"compare": {"valueset": {"sets": ["pm3"]}}}, r"compare.valueset.sets: unknown value set 'pm3'"),
    ({"compare": {"sharing": {"budgets": [0]}}}, r"compare.sharing.budgets.0: 0 is less than or equal to the minimum of 0"),
    ({"compare": {"methods": ["lasso"]}}, r"compare.methods.0: 'lasso' is not one of"),
    ({"hparams": {"prune": {"epoch": 2}}}, r"unknown training setting 'epoch'"),
])
def test_bad_compare_config_is_one_line(bad, match):
    with pytest.raises(WPError, match=match) as err:
        config.validate(bad)
    assert "\n" not in str(err.value)
