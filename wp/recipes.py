"""Training recipes: per stage and network, the hyperparameters handed to ``wp.train.fit``.

- ``paper``: the reference code's optimizers, schedules, batch size 128 and epochs
  (reference-behaviour.md sections 4 and 6), in fp32 (``amp: off``) as the reference ran. Many GPU-hours. Evaluation runs in batches of 1024
  (in eval mode the batch size changes nothing but the speed).
- ``fast``: our recipe for a GPU: SGD with Nesterov momentum, a one-cycle schedule, label
  smoothing and larger batches, far fewer epochs.
- ``smoke``: seconds to minutes on a CPU: class-balanced subsets, one or two epochs. For the tests;
  its accuracies are far below the paper's.
- ``demo``: ``smoke`` sized for ``make demo`` on a 2-core CPU: bf16 autocast when pretraining and
  retraining with pools (about 2x on MobileNet-v2 on a CPU with bf16 instructions), 1,000 images for
  ``act_train``. (1,000 images for ``wp_train`` and 1,200 for MobileNet-v2's pretraining cost up to 6
  points of Table 4 and were dropped.)

``resolve(config, stage, network)`` applies, in order: the recipe, ``config['hparams'][stage]``,
``config['network_hparams'][network][stage]``. The result holds both the optimiser settings and the data-selection
settings (``train_subset``, ``test_subset``, ``selection``, ``val_fraction``: ``wp.selection.KEYS``, read only by
``wp.selection``). A network of your own (``network_modules``) starts
from the recipe's settings for ``GENERIC`` (TinyConv's: plain SGD + cosine in ``paper``, the same
settings as every network in ``fast`` and ``smoke``).
"""

from __future__ import annotations

from wp import WPError
from wp.train import hparams

STAGES = ("pretrain", "wp_train", "act_train")
RESNETS = ("resnet_10", "resnet_14", "resnet_mlperf")
GENERIC = "tinyconv"  # whose recipe entries a network of the user's own starts from

_BATCHES = {"batch_size": 128, "eval_batch_size": 1024}
_ADAM_EXP = {"optimizer": "adam", "lr": 1e-3, "schedule": "exp", "gamma": 0.99, "weight_decay": 0.0, **_BATCHES}
_ADAM_STEP = {"optimizer": "adam", "lr": 1e-3, "schedule": "step", "gamma": 0.5, "step_epochs": 20, "weight_decay": 0.0, **_BATCHES}
_SGD_COS = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine", **_BATCHES}

PAPER = {
    "pretrain": {
        "resnet_10": {**_ADAM_EXP, "epochs": 500},
        "resnet_14": {**_ADAM_EXP, "epochs": 500},
        "resnet_mlperf": {**_ADAM_EXP, "epochs": 500},
        "mobilenet_v2": {**_SGD_COS, "epochs": 300},
        "tinyconv": {**_SGD_COS, "epochs": 200},
    },
    "wp_train": {
        "resnet_10": {**_ADAM_STEP, "epochs": 100},
        "resnet_14": {**_ADAM_STEP, "epochs": 100},
        "resnet_mlperf": {**_SGD_COS, "epochs": 200},
        "mobilenet_v2": {**_SGD_COS, "epochs": 100},
        "tinyconv": {**_SGD_COS, "epochs": 100},
    },
    # retraining with quantized activations (reference-behaviour.md section 8): SGD + cosine, 50 epochs
    "act_train": {
        **{net: {**_SGD_COS, "epochs": 50} for net in RESNETS},
        "mobilenet_v2": {**_SGD_COS, "lr": 0.002, "epochs": 50},
        "tinyconv": {**_SGD_COS, "lr": 0.002, "epochs": 50},
    },
}

_FAST = {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "schedule": "onecycle",
         "label_smoothing": 0.1, "batch_size": 256, "eval_batch_size": 1024, "bn_recalibrate": 20}
FAST = {
    "pretrain": {net: {**_FAST, "lr": 0.2, "warmup_epochs": 2, "epochs": 40} for net in (*RESNETS, "mobilenet_v2", "tinyconv")},
    "wp_train": {net: {**_FAST, "lr": 0.05, "warmup_epochs": 1, "epochs": 15} for net in (*RESNETS, "mobilenet_v2", "tinyconv")},
    "act_train": {net: {**_FAST, "lr": 0.01, "warmup_epochs": 0.5, "epochs": 5} for net in (*RESNETS, "mobilenet_v2", "tinyconv")},
}

_SMOKE = {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "schedule": "onecycle",
          "batch_size": 64, "train_subset": 2000, "test_subset": 1000, "bn_recalibrate": 8}
SMOKE = {
    "pretrain": {net: {**_SMOKE, "lr": 0.05, "warmup_epochs": 0.5, "epochs": 2} for net in (*RESNETS, "mobilenet_v2", "tinyconv")},
    "wp_train": {net: {**_SMOKE, "lr": 0.01, "warmup_epochs": 0.2, "epochs": 1} for net in (*RESNETS, "mobilenet_v2", "tinyconv")},
    "act_train": {net: {**_SMOKE, "lr": 0.005, "warmup_epochs": 0.2, "epochs": 1} for net in (*RESNETS, "mobilenet_v2", "tinyconv")},
}

# MobileNet-v2 is by far the slowest network on a CPU (depthwise convs): fewer smoke images
for _stage in SMOKE.values():
    _stage["mobilenet_v2"]["train_subset"] = 1500

# --- comparison methods (issue 7): retraining settings of prune (per round), ternary and valueset ---
# paper: pruning fine-tunes with each network's pretraining optimizer at 0.1x its learning rate (Han et al.),
# 20 epochs per round; ternary: TWTA-Net's Adam 1e-2 then 1e-3, 200 + 200 epochs, batch 200; value-set
# search: the seed's ResNet-20 CIFAR-10 config (SGD 0.1, momentum 0.9, wd 1e-4, cosine, 200 epochs).
COMPARE_STAGES = ("prune", "ternary", "valueset")
_ALL_NETS = (*RESNETS, "mobilenet_v2", "tinyconv")
PAPER["prune"] = {net: {**PAPER["pretrain"][net], "lr": PAPER["pretrain"][net]["lr"] * 0.1, "schedule": "constant", "epochs": 20}
                  for net in _ALL_NETS}
PAPER["ternary"] = {net: {"optimizer": "adam", "lr": 1e-2, "schedule": "step", "gamma": 0.1, "step_epochs": 200,
                          "weight_decay": 0.0, "batch_size": 200, "epochs": 400} for net in _ALL_NETS}
PAPER["valueset"] = {net: {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "cosine",
                           "batch_size": 128, "epochs": 200} for net in _ALL_NETS}
FAST["prune"] = {net: {**_FAST, "lr": 0.02, "warmup_epochs": 0.5, "epochs": 5} for net in _ALL_NETS}
FAST["ternary"] = {net: {**_FAST, "lr": 0.05, "warmup_epochs": 1, "epochs": 15} for net in _ALL_NETS}
FAST["valueset"] = {net: {**_FAST, "lr": 0.05, "warmup_epochs": 1, "epochs": 15} for net in _ALL_NETS}
SMOKE["prune"] = {net: {**_SMOKE, "lr": 0.005, "warmup_epochs": 0.2, "epochs": 1} for net in _ALL_NETS}
SMOKE["ternary"] = {net: {**_SMOKE, "lr": 0.01, "warmup_epochs": 0.2, "epochs": 2} for net in _ALL_NETS}
SMOKE["valueset"] = {net: {**_SMOKE, "lr": 0.01, "warmup_epochs": 0.2, "epochs": 2} for net in _ALL_NETS}
for _stage in COMPARE_STAGES:
    SMOKE[_stage]["mobilenet_v2"]["train_subset"] = 1500
STAGES = STAGES + COMPARE_STAGES
# --- end comparison methods ---

# the reference trained and evaluated in fp32: the paper recipe turns autocast off in every stage
# (fast and smoke keep amp's default, auto: bf16 on a GPU, fp32 on the CPU)
for _stage in PAPER.values():
    for _hp in _stage.values():
        _hp["amp"] = "off"

# --- demo (issue 16): `make demo` in minutes on a 2-core CPU; the comparison methods train as in smoke ---
DEMO = {stage: {net: dict(hp) for net, hp in nets.items()} for stage, nets in SMOKE.items()}
for _net in _ALL_NETS:
    DEMO["pretrain"][_net]["amp"] = "bf16"
    DEMO["wp_train"][_net]["amp"] = "bf16"
    DEMO["act_train"][_net]["train_subset"] = 1000  # fp32: its fake quantizer sees the activations as evaluated
# --- end demo ---

RECIPES = {"paper": PAPER, "fast": FAST, "smoke": SMOKE, "demo": DEMO}


def resolve(config: dict, stage: str, network: str) -> dict:
    """The full hyperparameter dict for ``stage`` of ``network`` under ``config``."""
    name = config.get("recipe", "smoke")
    if name not in RECIPES:
        raise WPError(f"unknown recipe {name!r}: use one of {', '.join(RECIPES)}")
    if stage not in STAGES:
        raise WPError(f"unknown training stage {stage!r}: use one of {', '.join(STAGES)}")
    recipe = RECIPES[name][stage]
    hp = dict(recipe.get(network, recipe[GENERIC]))
    hp.update((config.get("hparams") or {}).get(stage) or {})
    hp.update(((config.get("network_hparams") or {}).get(network) or {}).get(stage) or {})
    return hparams(hp)
