import json

import pytest

from cordillera.model.configuration import (
    ADDED_SPECIAL_TOKENS,
    PRESETS,
    ExpertConfig,
    TextConfig,
    VLAConfig,
    get_preset,
)


def test_alpamayo_10b_token_ids_match_spec_table():
    # spec/alpamayo_model.md §2.5 inferred id map
    cfg = get_preset("alpamayo-10b")
    ids = cfg.special_ids
    assert cfg.vocab_size == 155697
    assert cfg.traj_token_start_id == 151669
    assert cfg.hist_token_start_id == 154669
    expected = {
        "<|prompt_start|>": 155669, "<|cot_start|>": 155677, "<|cot_end|>": 155678,
        "<|traj_future_start|>": 155681, "<|traj_future_end|>": 155683, "<|traj_history|>": 155684,
        "<|traj_future|>": 155685, "<|route_start|>": 155690, "<|route_end|>": 155692,
        "<|question_start|>": 155693, "<|answer_start|>": 155695, "<|answer_end|>": 155696,
        "<|image_pad|>": 151655,
    }  # fmt: skip
    for tok, want in expected.items():
        assert ids[tok] == want, tok
    assert len(ADDED_SPECIAL_TOKENS) == 28 and "<|image_pad|>" not in ADDED_SPECIAL_TOKENS


def test_nano_layout_and_image_tokens():
    cfg = get_preset("nano")
    assert cfg.vocab_size == 4096 + 2000 + 28
    assert cfg.special_ids["<|image_pad|>"] == 6  # base BPE specials at 0..7
    # 96x160 px, patch 16, merge 2 -> 6x10 patches -> 15 LLM tokens per frame, 240 for 4x4 frames
    assert cfg.num_image_tokens == 15


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_json_round_trip(name):
    cfg = PRESETS[name]
    back = VLAConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg


def test_hf_config_round_trip(tmp_path):
    from cordillera.model.hf_config import CordilleraVLAConfig

    cfg = PRESETS["small"]
    CordilleraVLAConfig.from_vla(cfg).save_pretrained(tmp_path)
    loaded = CordilleraVLAConfig.from_pretrained(tmp_path)
    assert loaded.model_type == "cordillera_vla"
    assert loaded.to_vla() == cfg


def test_invalid_configs_raise():
    with pytest.raises(ValueError, match="expert layers"):
        VLAConfig(expert=ExpertConfig(num_hidden_layers=8))
    with pytest.raises(ValueError, match="mrope_section"):
        TextConfig(head_dim=64, mrope_section=(24, 20, 20))
    with pytest.raises(ValueError, match="multiple of patch"):
        VLAConfig(inputs=PRESETS["nano"].inputs.__class__(image_height=100))
    with pytest.raises(ValueError, match="unknown VLAConfig keys"):
        VLAConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError, match="spec index order"):
        PRESETS["nano"].inputs.__class__(cameras=("camera_front_wide_120fov", "camera_cross_left_120fov"))
