import pytest

from empp_ff.train.config import ConfigError, apply_overrides, config_from_dict, load_config


def test_demo_config_is_valid_and_overrides_apply():
    cfg = load_config(None, ["train.max_epochs=3", "data.n_train=0.5", "empp.enabled=false", "model.e0s={1: -13.6}"])
    assert cfg.train.max_epochs == 3
    assert cfg.data.n_train == 0.5
    assert cfg.empp.enabled is False
    assert cfg.model.e0s == {1: -13.6}


def test_misspelled_key_is_named_with_suggestion():
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.bach_size'.*did you mean 'train\.batch_size'"):
        load_config(None, ["train.bach_size=4"])


def test_unknown_top_level_key_and_section():
    with pytest.raises(ConfigError, match="unknown config key 'sead'.*'seed'"):
        config_from_dict({"sead": 3})
    with pytest.raises(ConfigError, match="unknown config key 'empp.num_mask'.*'empp.num_masks'"):
        config_from_dict({"empp": {"num_mask": 3}})


def test_all_unknown_keys_are_named_at_once():
    """Issue 19: `--set a=1 b=2` named only 'a'."""
    with pytest.raises(ConfigError) as info:
        load_config(None, ["a=1", "b=2", "train.bach_size=4", "aux.denoise.wieght=1", "train.lr=1e-3"])
    assert str(info.value) == (
        "4 unknown config keys: 'train.bach_size' (did you mean 'train.batch_size'?), 'a' (did you mean 'aux'?), "
        "'b' (valid keys: aux, data, empp, finetune_from, loss, model, run_dir, seed, task, train), "
        "'aux.denoise.wieght' (did you mean 'aux.denoise.weight'?)"
    )


def test_wrong_types_and_values_are_named():
    with pytest.raises(ConfigError, match="train.max_epochs.*integer"):
        config_from_dict({"train": {"max_epochs": "ten"}})
    with pytest.raises(ConfigError, match="model.dtype"):
        config_from_dict({"model": {"dtype": "float16"}})
    with pytest.raises(ConfigError, match="task"):
        config_from_dict({"task": "unsupervised"})
    with pytest.raises(ConfigError, match="empp.enabled"):
        config_from_dict({"task": "pretrain"})
    with pytest.raises(ConfigError, match="num_masks"):
        config_from_dict({"empp": {"num_masks": 0}})


def test_each_section_checks_its_own_values():
    """Issue 27: a section validates itself; load() runs every section's check, defaults included."""
    from empp_ff.denoise.config import DenoiseConfig
    from empp_ff.train.config import Config, DataConfig, LossConfig, ModelConfig, TrainConfig
    from empp_ff.train.typed_config import load

    for section, key in ((DataConfig(n_val=0), "data.n_val"), (LossConfig(type="l1"), "loss.type"),
                         (TrainConfig(lr=0.0), "train.lr"), (ModelConfig(r_max=-1.0), "model.r_max"),
                         (Config(task="x"), "task")):
        with pytest.raises(ConfigError, match=key):
            section.validate()
    with pytest.raises(ValueError, match="aux.denoise.sigma"):
        DenoiseConfig(sigma=0.0).validate()
    assert isinstance(load(Config, {}), Config)


def test_yaml_file_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 5\ndata:\n  path: x.npz\n  n_train: 10\n")
    cfg = load_config(path)
    assert (cfg.seed, cfg.data.path, cfg.data.n_train) == (5, "x.npz", 10)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_set_requires_key_value():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides({}, ["train.max_epochs"])
