"""The vision probe (stage-1 auxiliary head): hand-derived targets, it reads image tokens only,
its loss reaches the vision tower, and it travels through save/load and the stage-1 → 2 hand-over."""

import dataclasses
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_synth import make_samples, tiny_config  # noqa: E402

from cordillera.model.modeling import (  # noqa: E402
    PROBE_ARC_M,
    PROBE_BEARING_SCALE_RAD,
    PROBE_SPEED_SCALE_MPS,
    PROBE_TIMES_S,
    CordilleraVLA,
    VisionProbe,
    vision_probe_targets,
)

torch.set_num_threads(1)
NA = len(PROBE_ARC_M)


def _probe_config(weight=1.0):
    cfg = tiny_config()
    return cfg.replace(loss=dataclasses.replace(cfg.loss, vision_probe_weight=weight))


def _circle_left(radius_m, speed_mps, T=64, dt=0.1):
    s = speed_mps * dt * torch.arange(1, T + 1, dtype=torch.float64)
    th = s / radius_m
    return torch.stack([radius_m * th.sin(), radius_m * (1 - th.cos()), torch.zeros(T, dtype=torch.float64)], -1)


def test_targets_hand_values():
    B, V = PROBE_BEARING_SCALE_RAD, PROBE_SPEED_SCALE_MPS
    # straight at 10 m/s: 64 m of path, bearings 0, mean speed 10 m/s
    straight = torch.stack([torch.arange(1, 65) * 1.0, torch.zeros(64), torch.zeros(64)], -1)
    # a left circle of R = 100 m at 10 m/s: the chord to arc length s has bearing s / (2R)
    circle = _circle_left(100.0, 10.0).float()
    # stopped: no path, only the speeds (0) are valid
    stopped = torch.zeros(64, 3)
    tgt, valid = vision_probe_targets(torch.stack([straight, circle, stopped]))
    assert tgt.shape == valid.shape == (3, NA + len(PROBE_TIMES_S))
    assert torch.allclose(tgt[0], torch.tensor([0.0] * NA + [10.0 / V] * len(PROBE_TIMES_S)), atol=1e-5)
    want = torch.tensor([s / 200.0 / B for s in PROBE_ARC_M])  # s/(2R) rad
    assert torch.allclose(tgt[1, :NA], want, atol=1e-2), tgt[1, :NA]
    assert torch.allclose(tgt[1, NA:], torch.full((len(PROBE_TIMES_S),), 10.0 / V), atol=1e-3)  # arc length / time
    assert valid[0].all() and valid[1].all()
    assert not valid[2, :NA].any() and valid[2, NA:].all() and (tgt[2, NA:] == 0).all()
    # 25 m of path: the 30 and 40 m bearings are invalid; a right turn has a negative bearing
    short = torch.stack([torch.linspace(25 / 64, 25, 64), -torch.linspace(25 / 64, 25, 64), torch.zeros(64)], -1)
    tgt, valid = vision_probe_targets(short[None])
    ok = torch.tensor(PROBE_ARC_M) <= 25 * math.sqrt(2)
    assert torch.equal(valid[0, :NA], ok)
    assert torch.allclose(tgt[0, :NA][ok], torch.full((int(ok.sum()),), -math.pi / 4 / B), atol=1e-3)


def test_probe_pools_image_tokens_only():
    torch.manual_seed(0)
    probe = VisionProbe(16, num_queries=2, width=8)
    h = torch.randn(2, 10, 16)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[:, 2:6] = True
    out = probe(h, mask)
    h2 = h.clone()
    h2[:, 6:] += 5.0  # text / history tokens
    assert torch.equal(probe(h2, mask), out)
    h2[0, 3] += 1.0  # an image token of row 0
    changed = probe(h2, mask)
    assert not torch.allclose(changed[0], out[0]) and torch.equal(changed[1], out[1])


@pytest.fixture(scope="module")
def proc():
    from cordillera.model.processor import VLAProcessor
    from cordillera.model.tokenizer import load_tokenizer

    return VLAProcessor(_probe_config(), load_tokenizer(_probe_config()))


def test_probe_sees_pixels_not_history(proc):
    """In the whole model, the probe's prediction depends on the images, not on the ego history
    (the image tokens come first in the causal prompt)."""
    from cordillera.model.processor import MM_TOKEN_TYPE_IDS

    torch.manual_seed(0)
    vla = CordilleraVLA(_probe_config()).eval()
    samples = make_samples(2, seed=1)

    def predict(batch):
        m = vla.model
        args = [batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", MM_TOKEN_TYPE_IDS)]
        _, _, _, h = m.stage1_losses(*args, batch["labels"])
        return m.vision_probe(h, batch[MM_TOKEN_TYPE_IDS].bool())

    with torch.no_grad():
        base = predict(proc(samples))
        other = [dict(s, ego_history_xyz=s["ego_history_xyz"] * 0.3) for s in samples]
        b2 = proc(other)
        assert not torch.equal(b2["input_ids"], proc(samples)["input_ids"])  # the history tokens did change
        assert torch.allclose(predict(b2), base, atol=1e-5)
        flipped = [dict(s, image_frames=s["image_frames"].flip(-1)) for s in samples]
        assert not torch.allclose(predict(proc(flipped)), base, atol=1e-3)


def test_stage1_loss_trains_vision_tower_and_checkpoint_round_trip(proc, tmp_path):
    from cordillera.train import stage2
    from cordillera.train.config import TrainConfig

    torch.manual_seed(0)
    vla = CordilleraVLA(_probe_config(0.5))
    batch = proc(make_samples(2, seed=2))
    loss, logs = vla(batch, stage="stage1")
    assert logs["vision_probe"] > 0
    assert loss.item() == pytest.approx(logs["ce_traj"] + logs["ce_text"] + 0.5 * logs["vision_probe"], rel=1e-5)
    # the probe's loss alone reaches the vision tower
    from cordillera.model.processor import MM_TOKEN_TYPE_IDS

    args = [batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", MM_TOKEN_TYPE_IDS)]
    _, _, _, h = vla.model.stage1_losses(*args, batch["labels"])
    vla.zero_grad()
    vla.model.vision_probe.loss(h, batch[MM_TOKEN_TYPE_IDS].bool(), batch["ego_future_xyz"]).backward()
    vis = [p.grad for p in vla.model.vlm.model.visual.parameters() if p.grad is not None]
    assert vis and any(g.abs().sum() > 0 for g in vis)
    # no probe in the config, no head and no extra loss term
    plain = CordilleraVLA(tiny_config())
    assert plain.model.vision_probe is None and "vision_probe" not in plain(batch, stage="stage1")[1]
    # save / load keeps the head bit-exactly
    vla.save_pretrained(tmp_path / "s1")
    back = CordilleraVLA.from_pretrained(tmp_path / "s1")
    for k, v in vla.model.vision_probe.state_dict().items():
        assert torch.equal(v, back.model.vision_probe.state_dict()[k]), k
    # stage 2 takes the stage-1 probe with the backbone and freezes both
    cfg = TrainConfig(stage="stage2", init_from=str(tmp_path / "s1"), progress=False, tensorboard=False,
                      checkpoint=dict(out_dir=str(tmp_path / "s2")))  # fmt: skip
    from cordillera.train import loop

    s2 = stage2.build_model(cfg, loop.RunData(None, None))
    assert torch.equal(s2.model.vision_probe.queries, vla.model.vision_probe.queries)
    assert not any(p.requires_grad for p in s2.model.vision_probe.parameters())
    assert any(p.requires_grad for p in s2.model.expert.parameters())


def test_train_config_sets_the_probe_weight():
    from cordillera.train import loop
    from cordillera.train.config import TrainConfig

    cfg = loop.model_config(TrainConfig(vision_probe_weight=0.25), base=tiny_config())
    assert cfg.loss.vision_probe_weight == 0.25
    assert loop.model_config(TrainConfig(), base=tiny_config()).loss.vision_probe_weight == 0.0


def test_read_road_and_open_loop_probe_errors(proc):
    """`Planner.read_road` returns bearings/speeds in rad and m/s; the open-loop rows carry the probe
    errors beside the no-image baselines, which are 0 on straight constant-speed driving."""
    from cordillera.model.inference import Planner
    from cordillera.model.modeling import vision_probe_units
    from cordillera.train.evaluate import vision_probe_errors

    torch.manual_seed(0)
    planner = Planner(CordilleraVLA(_probe_config()), proc)
    s = make_samples(1, seed=4)[0]  # i = 0: constant speed, straight
    bearing, speed = planner.read_road({k: s[k] for k in ("image_frames", "camera_indices", "ego_history_xyz",
                                                           "ego_history_rot")})  # fmt: skip
    assert bearing.shape == (1, NA) and speed.shape == (1, len(PROBE_TIMES_S))
    m = planner.model.model
    b = proc([s])
    with torch.no_grad():
        _, _, _, h = m.stage1_losses(*[b[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw",
                                                      "mm_token_type_ids")], b["labels"])  # fmt: skip
        ref = vision_probe_units(m.vision_probe(h, b["mm_token_type_ids"].bool()))
    assert torch.allclose(bearing, ref[0], atol=1e-5) and torch.allclose(speed, ref[1], atol=1e-5)
    np_s = {k: (v.numpy() if torch.is_tensor(v) else v) for k, v in s.items()}
    row = vision_probe_errors(planner, np_s, np_s["ego_future_xyz"], np_s["ego_history_xyz"])
    assert row["probe_bearing_err_straight_deg"] == pytest.approx(0.0, abs=1e-6)
    assert row["probe_speed_err_hold_mps"] == pytest.approx(0.0, abs=1e-3)
    v = float(s["ego_future_xyz"][0, 0]) / 0.1
    assert row["probe_speed_err_mps"] == pytest.approx(float((speed[0] - v).abs().mean()), abs=1e-3)
    assert row["probe_bearing_err_deg"] == pytest.approx(float(bearing[0].abs().mean()) * 180 / math.pi, rel=1e-4)
    plain = Planner(CordilleraVLA(tiny_config()), proc)
    assert plain.read_road(s) is None and vision_probe_errors(plain, np_s, np_s["ego_future_xyz"],
                                                              np_s["ego_history_xyz"]) == {}  # fmt: skip
