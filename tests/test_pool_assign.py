"""pool_assign soft (wp.pool.SoftAssignment): the training projection against a softmax mixture
computed by hand, the temperature schedule, evaluation as the hard projection onto the trained pool,
wp_train carrying it (checkpoint, metrics, deployment, resume) and the workflow passing it."""

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, copy_workflow, sgd_losses, snakemake, stage_kw

from wp import WPError, checkpoint, data, pool, poolfile, selection
from wp.stages import act_train, quant_eval, wp_train
from wp.train import evaluate, hparams

HP = {"epochs": 2, "batch_size": 32, "train_subset": 256, "test_subset": 100, "lr": 0.02, "schedule": "cosine"}


def linear_with_soft_pool(tau=(0.5, 0.05), total=4, scale="layer_learned"):
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 3)
    model = torch.nn.Sequential(lin)
    centers = torch.randn(5, 8)
    latent = lin.weight.detach().clone()
    soft = pool.SoftAssignment(centers, tau, total)
    pool.attach(model, centers, ["0"], scale, soft=soft)
    return model, lin, centers, latent, soft


def mixture_by_hand(latent: np.ndarray, centers: np.ndarray, tau: float, s: float) -> np.ndarray:
    """softmax(cos / tau) @ pool for every z-vector of a linear weight (8 consecutive inputs), times s."""
    v = latent.reshape(-1, 8)
    cos = (v / np.linalg.norm(v, axis=1, keepdims=True)) @ (centers / np.linalg.norm(centers, axis=1, keepdims=True)).T
    a = np.exp(cos / tau - (cos / tau).max(1, keepdims=True))
    a /= a.sum(1, keepdims=True)
    return (s * (a @ centers)).reshape(latent.shape)


def test_training_sees_the_softmax_mixture_of_the_pool_and_its_temperature_falls_per_step():
    model, lin, centers, latent, soft = linear_with_soft_pool()
    s = float(lin.parametrizations.weight[0].scale.detach())
    model.train()
    w = lin.weight.detach().double().numpy()
    assert np.allclose(w, mixture_by_hand(latent.double().numpy(), centers.double().numpy(), 0.5, s), atol=1e-5)
    soft.advance()
    soft.advance()  # half-way: the geometric mean of the start and end temperatures
    assert soft.tau() == pytest.approx(0.5 * 0.1**0.5)
    w = lin.weight.detach().double().numpy()
    assert np.allclose(w, mixture_by_hand(latent.double().numpy(), centers.double().numpy(), 0.5 * 0.1**0.5, s), atol=1e-5)
    for _ in range(4):
        soft.advance()
    assert soft.tau() == pytest.approx(0.05)  # stays at the end temperature after the last step
    assert int(soft.steps) == 6 and "0.parametrizations.weight.0.soft.steps" in model.state_dict()  # resumes with the model


def test_the_gradient_reaches_the_pool_and_the_latent_weights_through_the_softmax():
    """Gradients of sum(G * weight) against the same mixture written in float64 autograd by hand:
    the pool is trained, and the latent weights get the softmax's gradient, not the straight-through one."""
    model, lin, centers, latent, soft = linear_with_soft_pool()
    s = lin.parametrizations.weight[0].scale
    g = torch.randn(3, 16)
    (lin.weight * g).sum().backward()
    v = latent.double().reshape(-1, 8).requires_grad_()
    p = centers.double().requires_grad_()
    a = torch.softmax((v / v.norm(dim=1, keepdim=True)) @ (p / p.norm(dim=1, keepdim=True)).T / 0.5, dim=1)
    (float(s.detach()) * (a @ p) * g.double().reshape(-1, 8)).sum().backward()
    assert torch.allclose(soft.pool.grad.double(), p.grad, atol=1e-5)
    latent_grad = lin.parametrizations.weight.original.grad.double()
    assert torch.allclose(latent_grad, v.grad.reshape(3, 16), atol=1e-5)
    assert not torch.allclose(latent_grad, float(s.detach()) * g.double(), atol=1e-3)  # not straight through
    assert s.grad is not None


@pytest.mark.parametrize("scale", ["none", "layer", "layer_learned"])
def test_evaluation_is_the_hard_projection_onto_the_trained_pool(scale):
    model, lin, centers, latent, soft = linear_with_soft_pool(scale=scale)
    with torch.no_grad():
        soft.pool.add_(0.3 * torch.randn_like(soft.pool))  # as if trained
    trained = soft.pool.detach().clone()
    idx = torch.tensor(np.argmax((latent.reshape(-1, 8) / latent.reshape(-1, 8).norm(dim=1, keepdim=True)).numpy()
                                 @ (trained / trained.norm(dim=1, keepdim=True)).numpy().T, axis=1))
    p = trained[idx]
    s = {"none": 1.0, "layer": float((latent.reshape(-1, 8) * p).sum() / (p * p).sum()),
         "layer_learned": float(lin.parametrizations.weight[0].scale.detach()) if scale == "layer_learned" else None}[scale]
    expected = (s * p).reshape(3, 16)
    model.eval()
    assert torch.allclose(lin.weight, expected, atol=1e-6)
    model.train()
    with torch.no_grad():  # BatchNorm recalibration and detach read the weight this way
        assert torch.allclose(lin.weight, expected, atol=1e-6)
    assert torch.equal(pool.trained_pool(model, centers), trained)
    assert torch.equal(pool.indices(model, trained, ["0"])["0"].long(), idx)
    pool.detach(model)
    assert torch.allclose(lin.weight, expected, atol=1e-6)


def test_hard_assignment_keeps_the_frozen_pool():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 3))
    centers = torch.randn(5, 8)
    pool.attach(model, centers, ["0"], "layer_learned")
    assert pool.soft_assignment(model) is None and pool.trained_pool(model, centers) is centers
    assert not any("soft" in k for k in model.state_dict())


@pytest.mark.parametrize("tau", [(0.1, 0.0), (-1.0, 0.1), (0.1,)])
def test_bad_temperatures_are_one_clear_line(tau):
    with pytest.raises(WPError, match="pool_assign_tau must be two temperatures above 0"):
        pool.SoftAssignment(torch.randn(4, 8), tau, 10)


def test_wp_train_with_soft_assignment_trains_the_pool_and_deploys_it(digits_h5, trained_tinyconv, pool8, tmp_path):
    m = wp_train.run(digits_h5, trained_tinyconv, pool8, "tinyconv", hparams(HP), tmp_path / "s.pt", tmp_path / "s.json",
                     **stage_kw("wp_train", seed=0, device="cpu", assign="soft", tau=(0.1, 0.01)))
    assert m["pool_assign"] == "soft" and m["pool_assign_tau"] == [0.1, 0.01]
    ck = checkpoint.load(tmp_path / "s.pt", kind="pooled")
    frozen = poolfile.read(pool8)["centers"]
    assert ck["pool_assign"] == "soft" and checkpoint.pool_assign(ck) == "soft"
    assert not torch.equal(ck["pool"], frozen)  # the trained pool, not the k-means one
    # the checkpoint's network is exactly what wp_train scored
    ds = data.read(digits_h5)
    test = selection.images(ds.test, selection.recorded(ck, tmp_path / "s.pt").test, torch.device("cpu"))
    assert evaluate(checkpoint.build(ck), test) == m["test_top1"]
    # later stages deploy the trained pool (quant_eval checks the weights against pool + indices) and record it
    q = quant_eval.run(digits_h5, tmp_path / "s.pt", "tinyconv", 8, 8, hparams(HP), tmp_path / "q.json",
                       **stage_kw("quant_eval", calibration_images=64, seed=0, device="cpu"))
    assert q["pool_assign"] == "soft" and q["test_top1"] > m["test_top1"] - 10
    # act_train retrains hard on the trained pool (lr 0: it must keep it, indices and weights) and records it
    a = act_train.run(digits_h5, tmp_path / "s.pt", "tinyconv", 8, hparams({**HP, "epochs": 1, "lr": 0.0}), tmp_path / "a.pt",
                      tmp_path / "a.json", **stage_kw("act_train", calibration_images=64, seed=0, device="cpu"))
    after = checkpoint.load(tmp_path / "a.pt", kind="pooled")
    assert a["pool_assign"] == "soft" and after["pool_assign"] == "soft" and torch.equal(after["pool"], ck["pool"])
    assert all(torch.equal(after["indices"][n], ck["indices"][n]) for n in ck["indices"])
    hard = wp_train.run(digits_h5, trained_tinyconv, pool8, "tinyconv", hparams(HP), tmp_path / "h.pt", tmp_path / "h.json",
                        **stage_kw("wp_train", seed=0, device="cpu"))
    assert hard["pool_assign"] == "hard" and "pool_assign_tau" not in hard
    assert hard["provenance"]["config_hash"] != m["provenance"]["config_hash"]
    assert "pool_assign" not in checkpoint.load(tmp_path / "h.pt")  # the paper's checkpoints stay as they were
    with pytest.raises(WPError, match="unknown pool assignment 'sharp': use one of hard, soft"):
        wp_train.run(digits_h5, trained_tinyconv, pool8, "tinyconv", hparams(HP), tmp_path / "x.pt", tmp_path / "x.json",
                     **stage_kw("wp_train", seed=0, device="cpu", assign="sharp"))
    assert not (tmp_path / "x.pt").exists()


def cli_wp_train(digits_h5, ckpt, pool_file, out, *extra):
    cmd = [sys.executable, "-m", "wp", "wp_train", "--data", str(digits_h5), "--checkpoint", str(ckpt), "--pool", str(pool_file),
           "--network", "tinyconv", "--hparams", json.dumps({**HP, "epochs": 3}), "--pool-assign", "soft",
           "--pool-assign-tau", "0.2", "0.01", "--device", "cpu", "--threads", "1", "--seed", "1",
           "--out", str(out), "--metrics", str(out.with_suffix(".json")), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


def test_a_killed_soft_retraining_resumes_its_temperature_and_pool(digits_h5, trained_tinyconv, pool8, tmp_path):
    straight, resumed = tmp_path / "straight.pt", tmp_path / "resumed.pt"
    r = cli_wp_train(digits_h5, trained_tinyconv, pool8, straight)
    assert r.returncode == 0, r.stderr
    assert cli_wp_train(digits_h5, trained_tinyconv, pool8, resumed, "--stop-after-epoch", "1").returncode == -signal.SIGKILL
    again = cli_wp_train(digits_h5, trained_tinyconv, pool8, resumed)
    assert again.returncode == 0 and "resuming from" in again.stdout, again.stderr
    a, b = checkpoint.load(straight), checkpoint.load(resumed)
    assert torch.equal(a["pool"], b["pool"]) and all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_the_workflow_passes_soft_assignment_and_its_temperatures_only_with_it(tmp_path):
    work = copy_workflow(tmp_path)
    cfg = {"recipe": "smoke", "device": "cpu", "experiments": {"digits": ["tinyconv"]}, "pool_sizes": [8]}

    def command(**extra):
        r = snakemake(work, "-n", "-p", "results/digits/tinyconv/wp8.pt", config={**cfg, **extra})
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        return next(line for line in r.stdout.splitlines() if " wp_train " in line)

    hard = command()
    assert "--pool-assign" not in hard  # wp_train's default, the paper's hard assignment
    assert command(pool_assign_tau=[0.3, 0.01]) == hard  # unused temperatures change nothing
    assert "--pool-assign soft --pool-assign-tau 0.3 0.01" in command(pool_assign="soft", pool_assign_tau=[0.3, 0.01])
    r = snakemake(work, "-n", "results/digits/tinyconv/wp8.pt", config={**cfg, "pool_assign": "sharp"})
    errors = [line for line in r.stderr.splitlines() if line.startswith("wp: error:")]
    assert r.returncode != 0 and len(errors) == 1 and "pool_assign" in errors[0]


def test_a_pool_vector_steps_as_one_of_its_weights_would_and_stays_stable(monkeypatch):
    """Pool vector k's gradient is the mixture's times min(1, POOL_STEP / n_k), n_k = Σ_i a_ik its soft
    count (by hand here); on a wide layer (256 z-vectors, 4 pool vectors: n_k of 20 to 100) SGD that
    is stable with POOL_STEP 8 ends in NaN on the plain gradient (POOL_STEP infinite)."""
    monkeypatch.setattr(pool, "POOL_STEP", 1.0)
    model, lin, centers, latent, soft = linear_with_soft_pool(scale="none")
    g = torch.randn(3, 16)
    (lin.weight * g).sum().backward()
    v = latent.double().reshape(-1, 8)
    p = centers.double().requires_grad_()
    a = torch.softmax((v / v.norm(dim=1, keepdim=True)) @ (p / p.norm(dim=1, keepdim=True)).T / 0.5, dim=1)
    (a @ p * g.double().reshape(-1, 8)).sum().backward()
    n = a.detach().sum(0)
    assert (n > 1).any() and torch.allclose(soft.counts.double(), n, atol=1e-5)
    assert torch.allclose(soft.pool.grad.double(), p.grad * (1.0 / n.clamp(min=1.0))[:, None], atol=1e-5)

    def train(step: float) -> list[float]:
        monkeypatch.setattr(pool, "POOL_STEP", step)
        torch.manual_seed(0)
        lin = torch.nn.Linear(2048, 1, bias=False)
        centers = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
        model = torch.nn.Sequential(lin)
        pool.attach(model, centers, ["0"], "none", soft=pool.SoftAssignment(centers, (0.05, 0.05), 40))
        return sgd_losses(lin, model.parameters(), 0.003)

    stable = train(8.0)
    assert all(np.isfinite(stable)) and stable[-1] < stable[0] / 5
    assert not np.isfinite(train(float("inf"))[-1])
