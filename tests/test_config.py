import pytest
import yaml

from wp import WPError, config, recipes


def test_defaults_are_filled_in():
    cfg = config.validate({})
    assert cfg["recipe"] == "smoke" and cfg["pool_sizes"] == [32, 64, 128]
    assert cfg["kmeans"]["backend"] == "torch" and cfg["kmeans"]["max_iter"] == 300
    assert cfg["experiments"] == {"fashion_mnist": ["tinyconv", "resnet_mlperf", "resnet_10", "resnet_14", "mobilenet_v2"]}


def test_repository_config_is_valid():
    cfg = config.load(config.SCHEMA_PATH.parent.parent.parent / "config.yaml")
    assert cfg["experiments"]["fashion_mnist"]


@pytest.mark.parametrize("bad,match", [
    ({"pool_sizes": [1]}, r"pool_sizes.0: 1 is less than the minimum of 2"),
    ({"pool_sizes": [300]}, r"pool_sizes.0: 300 is greater than the maximum of 256"),
    ({"recipe": "slow"}, r"recipe: 'slow' is not one of"),
    ({"experiments": {"fashion_mnist": ["resnet_99"]}}, r"unknown network 'resnet_99'"),
    ({"experiments": {"imagenet": ["tinyconv"]}}, r"unknown dataset 'imagenet'"),
    ({"hparams": {"pretrain": {"epoch": 3}}}, r"unknown training setting 'epoch'"),
    ({"colour": "blue"}, r"Additional properties are not allowed"),
])
def test_bad_values_give_one_line_errors(bad, match):
    with pytest.raises(WPError, match=match) as err:
        config.validate(bad)
    assert "\n" not in str(err.value)


def test_network_overrides_apply_after_global_ones():
    cfg = config.validate({"hparams": {"wp_train": {"epochs": 4, "lr": 0.3}},
                           "network_hparams": {"tinyconv": {"wp_train": {"epochs": 7}}}})
    assert recipes.resolve(cfg, "wp_train", "tinyconv")["epochs"] == 7
    assert recipes.resolve(cfg, "wp_train", "tinyconv")["lr"] == 0.3
    assert recipes.resolve(cfg, "wp_train", "resnet_10")["epochs"] == 4


def test_paper_recipe_is_the_reference_settings():
    cfg = config.validate({"recipe": "paper"})
    r10 = recipes.resolve(cfg, "pretrain", "resnet_10")
    assert (r10["optimizer"], r10["lr"], r10["schedule"], r10["gamma"], r10["epochs"], r10["batch_size"]) == ("adam", 1e-3, "exp", 0.99, 500, 128)
    wp10 = recipes.resolve(cfg, "wp_train", "resnet_10")
    assert (wp10["schedule"], wp10["gamma"], wp10["step_epochs"], wp10["epochs"]) == ("step", 0.5, 20, 100)
    tiny = recipes.resolve(cfg, "pretrain", "tinyconv")
    assert (tiny["optimizer"], tiny["lr"], tiny["weight_decay"], tiny["epochs"]) == ("sgd", 0.01, 5e-4, 200)
    assert recipes.resolve(cfg, "wp_train", "resnet_mlperf")["epochs"] == 200


def test_broken_yaml_is_reported(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("recipe: [smoke\n")
    with pytest.raises(WPError, match="not valid YAML"):
        config.load(p)
    with pytest.raises(WPError, match="not found"):
        config.load(tmp_path / "nope.yaml")
    p.write_text(yaml.safe_dump({"pool_sizes": [64]}))
    assert config.load(p)["pool_sizes"] == [64]


def test_command_line_strings_are_coerced():
    # what `snakemake --config pool_sizes=[16,32] seed=3 pool_fc=true` hands over
    cfg = config.validate({"pool_sizes": ["16", "32"], "seed": "3", "pool_fc": "true"})
    assert cfg["pool_sizes"] == [16, 32] and cfg["seed"] == 3 and cfg["pool_fc"] is True
    with pytest.raises(WPError, match="pool_sizes.0"):
        config.validate({"pool_sizes": ["sixteen"]})


# issue 14: every training setting's value is checked at validation, one line naming key and range
@pytest.mark.parametrize("where", ["hparams", "network_hparams"])
@pytest.mark.parametrize("key,value,rng", [
    ("epochs", -2, "an integer >= 1"), ("epochs", 0, "an integer >= 1"), ("epochs", "three", "an integer >= 1"),
    ("lr", -1, "a number > 0"), ("batch_size", 0, "an integer >= 1"), ("train_subset", 0, "an integer >= 1, or null"),
    ("val_fraction", 1.0, "a number > 0 and < 1"), ("amp", False, 'one of "auto", "bf16", "off"'),
])
def test_bad_training_values_are_refused_naming_key_and_range(where, key, value, rng):
    block = {"pretrain": {key: value}}
    cfg = {"experiments": {"digits": ["tinyconv"]}, where: block if where == "hparams" else {"tinyconv": block}}
    with pytest.raises(WPError) as err:
        config.validate(cfg)
    path = "hparams.pretrain" if where == "hparams" else "network_hparams.tinyconv.pretrain"
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"config: {path}.{key}: {value!r}") and f"(allowed: {rng})" in msg


def test_training_settings_in_the_schema_are_those_of_the_engine():
    from wp.train import HPARAM_DEFAULTS

    schema = yaml.safe_load(config.SCHEMA_PATH.read_text())
    rule = schema["definitions"]["training"]["properties"]
    assert set(rule) == set(HPARAM_DEFAULTS)
    config.check_training(dict(HPARAM_DEFAULTS), "pretrain", "tinyconv", schema)  # the defaults are allowed
    for name in recipes.RECIPES:  # and so is every recipe's every entry
        config.validate({"recipe": name})


def test_training_settings_that_do_not_work_together():
    with pytest.raises(WPError, match=r"the pretrain settings of tinyconv .*nesterov: true needs momentum > 0"):
        config.validate({"experiments": {"digits": ["tinyconv"]}, "hparams": {"pretrain": {"momentum": 0}}})
    config.validate({"experiments": {"digits": ["tinyconv"]}, "hparams": {"pretrain": {"momentum": 0, "nesterov": False}}})


def test_training_values_from_the_command_line_are_coerced():
    # what `snakemake --config 'hparams={pretrain: {epochs: 3, train_subset: null}}'` hands over
    cfg = config.validate({"hparams": {"pretrain": {"epochs": "3", "lr": "0.1", "train_subset": "null", "nesterov": "false"}},
                           "network_hparams": {"tinyconv": {"wp_train": {"batch_size": "16"}}}})
    assert cfg["hparams"]["pretrain"] == {"epochs": 3, "lr": 0.1, "train_subset": None, "nesterov": False}
    assert recipes.resolve(cfg, "wp_train", "tinyconv")["batch_size"] == 16
