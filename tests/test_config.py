"""Typed configs: unknown keys and wrong types fail naming the key and the file."""

import pytest

from cordillera.config import CONFIG_DIR, ConfigError, DemoConfig, SimRunConfig, load_config, preset_path


def test_shipped_presets_load():
    cfg = load_config(preset_path("sim"), SimRunConfig)
    assert cfg.sim.control_period_us == 100_000
    demo = load_config(CONFIG_DIR / "demo.yaml", DemoConfig)
    assert demo.sim.cameras[0] == "camera_cross_left_120fov"


def test_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("suite: smoke\nsim:\n  contrl_period_us: 5\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, SimRunConfig)
    msg = str(e.value)
    assert str(p) in msg and "sim.contrl_period_us" in msg and "unknown key" in msg


def test_wrong_type_names_key_and_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("rollouts: two\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, SimRunConfig)
    assert "rollouts" in str(e.value) and str(p) in str(e.value) and "'two'" in str(e.value)


def test_impossible_combination_names_both_values(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("sim:\n  control_period_us: 100000\n  physics_substep_us: 30000\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, SimRunConfig)
    assert "100000" in str(e.value) and "30000" in str(e.value)


def test_overrides_apply_and_validate(tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("suite: smoke\n")
    cfg = load_config(p, SimRunConfig, overrides={"sim.controller": "perfect", "rollouts": 3})
    assert cfg.sim.controller == "perfect" and cfg.rollouts == 3
    with pytest.raises(ConfigError):
        load_config(p, SimRunConfig, overrides={"sim.controller": "mpc9000"})


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", SimRunConfig)
    with pytest.raises(ConfigError, match="available"):
        preset_path("nope")


def test_invalid_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("suite: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p, SimRunConfig)
