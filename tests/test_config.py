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
