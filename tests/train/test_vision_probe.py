"""The vision probe (stage-1 auxiliary head): hand-derived lane targets, it reads the vision tower's image tokens,
its loss reaches the vision tower, and it travels through save/load and the stage-1 → 2 hand-over."""

import dataclasses
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_synth import make_samples, tiny_config, tiny_config_with_loss, with_lane_targets  # noqa: E402

from cordillera.model.modeling import (  # noqa: E402
    LANE_AHEAD,
    LANE_AHEAD_VALID,
    PROBE_FIELDS,
    CordilleraVLA,
    VisionProbe,
    vision_probe_normalise,
    vision_probe_units,
)
from cordillera.train.data import LaneAhead, lane_ahead  # noqa: E402

torch.set_num_threads(1)
NF = len(PROBE_FIELDS)
STAGE1_ARGS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")


def _probe_config(weight=1.0):
    return tiny_config_with_loss(vision_probe_weight=weight)


class _Reader:
    """One clip whose anchor-frame egomotion is a single pose (x, y, yaw)."""

    def __init__(self, x, y, yaw):
        from cordillera.geometry.pose import quat_from_yaw

        self.pose = (np.array([[x, y, 0.0]]), np.asarray(quat_from_yaw(np.array([yaw])))[None, 0])

    def metadata(self, clip_id):
        return {"family": "fake", "seed": 1}

    def egomotion(self, clip_id):
        return SimpleNamespace(poses=lambda t: self.pose)


def _map(second_is_intersection=False, fork=False):
    from cordillera.world.map import Lane, RoadMap

    k = (50 + 50 * math.cos(math.radians(30)), 50 * math.sin(math.radians(30)))
    lanes = {"a": Lane("a", np.array([[0.0, 0.0], [50.0, 0.0]]), successors=("b", "c") if fork else ("b",)),
             "b": Lane("b", np.array([[50.0, 0.0], k]), predecessors=("a",), is_intersection=second_is_intersection),
             "c": Lane("c", np.array([[50.0, 0.0], [50.0, -50.0]]), predecessors=("a",))}  # fmt: skip
    return RoadMap(lanes)


def _lane_ahead(roadmap, x, y, yaw, route=("a", "b")):
    la = LaneAhead(_Reader(x, y, yaw))
    # the scenario's ego start is the anchor: map = (10, 0) + anchor, yaw 0
    la._scenarios["clip"] = SimpleNamespace(map=roadmap, ego=SimpleNamespace(x_m=10.0, y_m=0.0, yaw_rad=0.0,
                                                                              route_lane_ids=route))  # fmt: skip
    return la("clip", 0)


def test_lane_ahead_hand_values():
    # ego at map (20, 0.5), heading 0.02 rad: 0.5 m left of lane a's centre, turned 0.02 rad left of it
    values, valid = _lane_ahead(_map(), 10.0, 0.5, 0.02)
    assert valid.all()
    assert values[0] == pytest.approx(0.5, abs=1e-9) and values[1] == pytest.approx(0.02, abs=1e-9)
    # 10 / 20 / 30 m ahead along a: (30, 0), (40, 0), (50, 0); 40 m: 10 m into b, which bends 30° left
    b40 = (50 + 10 * math.cos(math.radians(30)), 10 * math.sin(math.radians(30)))
    want = [math.atan2(-0.5, 10), math.atan2(-0.5, 20), math.atan2(-0.5, 30), math.atan2(b40[1] - 0.5, b40[0] - 20)]
    assert np.allclose(values[2:], np.array(want) - 0.02, atol=1e-9)
    # into an intersection connector: which way it goes is the route's choice, not visible → invalid
    values, valid = _lane_ahead(_map(second_is_intersection=True), 10.0, 0.5, 0.02)
    assert valid[:5].all() and not valid[5]
    # a fork: the successor on the route is followed, none on the route → invalid
    values, valid = _lane_ahead(_map(fork=True), 10.0, 0.5, 0.02, route=("a", "c"))
    assert valid.all() and values[5] == pytest.approx(math.atan2(-10 - 0.5, 50 - 20) - 0.02, abs=1e-9)
    assert not _lane_ahead(_map(fork=True), 10.0, 0.5, 0.02, route=("a",))[1][5]
    # far from any lane, or driving against it: nothing valid; no (family, seed): nothing valid
    assert not _lane_ahead(_map(), 10.0, 5.0, 0.0)[1].any()
    assert not _lane_ahead(_map(), 10.0, 0.0, math.pi)[1].any()
    la = LaneAhead(SimpleNamespace(metadata=lambda c: {}))
    assert not la("clip", 0)[1].any()
    # the map-pose function (closed loop) gives the clip's values for the same pose: map (20, 0.5), 0.02 rad
    sc = SimpleNamespace(map=_map(), ego=SimpleNamespace(route_lane_ids=("a", "b")))
    direct, ok = lane_ahead(sc, (20.0, 0.5), 0.02)
    values, valid = _lane_ahead(_map(), 10.0, 0.5, 0.02)
    assert np.array_equal(ok, valid) and np.allclose(direct, values, atol=1e-12)


def test_probe_units_round_trip():
    x = torch.randn(3, NF)
    assert torch.allclose(vision_probe_units(vision_probe_normalise(x)), x, atol=1e-6)


def test_probe_reads_the_last_frame_of_each_camera():
    torch.manual_seed(0)
    probe = VisionProbe(16, cameras=2, tokens_per_frame=2, proj=4, width=8)
    tokens = torch.randn(2, 8, 16)  # camera 0: frames at 0-1, 2-3; camera 1: 4-5, 6-7
    out = probe(tokens)
    t2 = tokens.clone()
    t2[:, 0:2] += 5.0  # camera 0's older frame
    t2[:, 4:6] += 5.0  # camera 1's older frame
    assert torch.equal(probe(t2), out)
    t2[0, 7] += 1.0  # camera 1's last frame, row 0
    changed = probe(t2)
    assert not torch.allclose(changed[0], out[0]) and torch.equal(changed[1], out[1])
    with pytest.raises(ValueError, match="image tokens per row"):
        probe(tokens[:, :3])  # not whole frames of both cameras


@pytest.fixture(scope="module")
def proc():
    from cordillera.model.processor import VLAProcessor
    from cordillera.model.tokenizer import load_tokenizer

    return VLAProcessor(_probe_config(), load_tokenizer(_probe_config()))


def test_probe_sees_pixels_not_history(proc):
    """In the whole model, the probe reads the image tokens the text layers receive: the same as
    `image_tokens` of the prompt, dependent on the pixels and not on the ego history."""
    torch.manual_seed(0)
    vla = CordilleraVLA(_probe_config()).eval()
    samples = make_samples(2, seed=1)

    def predict(batch):
        m = vla.model
        _, _, _, tokens, _ = m.stage1_losses(*[batch[k] for k in STAGE1_ARGS], batch["labels"])
        assert torch.equal(tokens, vla.image_tokens(batch))
        return m.vision_probe(tokens)

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
    batch = with_lane_targets(proc(make_samples(2, seed=2)))
    loss, logs = vla(batch, stage="stage1")
    assert logs["vision_probe"] > 0
    assert loss.item() == pytest.approx(logs["ce_traj"] + logs["ce_text"] + 0.5 * logs["vision_probe"], rel=1e-5)
    # the probe's loss alone reaches the vision tower and nothing of the text layers
    vla.zero_grad()
    vla.model.vision_probe.loss(vla.image_tokens(batch), batch[LANE_AHEAD], batch[LANE_AHEAD_VALID]).backward()
    vis = [p.grad for p in vla.model.vlm.model.visual.parameters() if p.grad is not None]
    assert vis and any(g.abs().sum() > 0 for g in vis)
    assert all(p.grad is None for p in vla.model.vlm.model.language_model.parameters())
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
    assert torch.equal(s2.model.vision_probe.proj.weight, vla.model.vision_probe.proj.weight)
    assert not any(p.requires_grad for p in s2.model.vision_probe.parameters())
    assert any(p.requires_grad for p in s2.model.expert.parameters())


def test_train_config_sets_the_probe_weight():
    from cordillera.train import loop
    from cordillera.train.config import TrainConfig

    cfg = loop.model_config(TrainConfig(vision_probe_weight=0.25), base=tiny_config())
    assert cfg.loss.vision_probe_weight == 0.25 and not cfg.loss.vision_probe_lead
    assert loop.model_config(TrainConfig(), base=tiny_config()).loss.vision_probe_weight == 0.0
    assert loop.model_config(TrainConfig(vision_probe_weight=1.0, vision_probe_lead=True),
                             base=tiny_config()).loss.vision_probe_lead


def _obstacles(rows):
    import pandas as pd

    cols = ["timestamp", "track_id", "x", "y", "length", "width"]
    return pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame({c: [] for c in cols})


def test_lead_gap_hand_values():
    from cordillera.model.modeling import LEAD_CLEAR_M
    from cordillera.train.data import lead_gap_m

    # ego at anchor (10, 0) heading +x; boxes: in path 30 m ahead (rear at 40 − 2 − 10 = 28 m), beside the
    # corridor (|y| − w/2 = 3.5 − 1 = 2.5 m), behind, and a wide truck whose box reaches the corridor
    rows = [(0, "lead", 40.0, 0.5, 4.0, 2.0), (0, "side", 20.0, 3.5, 4.0, 2.0), (0, "behind", 5.0, 0.0, 4.0, 2.0),
            (100_000, "lead", 41.0, 0.5, 4.0, 2.0), (100_000, "truck", 33.0, -2.2, 6.0, 2.6)]
    obs = _obstacles(rows)
    assert lead_gap_m(obs, 0, (10.0, 0.0), 0.0) == pytest.approx(28.0)
    # t0 between samples: the latest at or before t0 (the truck's rear 33 − 3 − 10 = 20 m, |y| − 1.3 = 0.9 m)
    assert lead_gap_m(obs, 150_000, (10.0, 0.0), 0.0) == pytest.approx(20.0)
    # rotated ego at (33, −30) heading +y: the lead is 8 m to the right (out), the truck 27.8 m ahead
    assert lead_gap_m(obs, 100_000, (33.0, -30.0), math.pi / 2) == pytest.approx(27.8 - 3.0)
    # nothing in the corridor: clear; no sample up to 100 ms before t0 (or none at all): unknown
    assert lead_gap_m(obs, 0, (10.0, 20.0), 0.0) == LEAD_CLEAR_M
    assert lead_gap_m(obs, 200_001, (10.0, 0.0), 0.0) is None
    assert lead_gap_m(_obstacles([]), 0, (10.0, 0.0), 0.0) is None
    assert lead_gap_m(obs, 0, (10.0, 0.0), 0.0) == lead_gap_m(obs, 50_000, (10.0, 0.0), 0.0)  # nothing after t0


def test_probe_with_lead_has_the_gap_field_and_old_configs_load_without_it(tmp_path):
    from cordillera.model.modeling import LEAD_FIELDS, probe_fields

    cfg = _probe_config()
    lead_cfg = cfg.replace(loss=dataclasses.replace(cfg.loss, vision_probe_lead=True))
    vla = CordilleraVLA(lead_cfg)
    assert vla.model.vision_probe.fields == PROBE_FIELDS + LEAD_FIELDS == probe_fields(True)
    assert vla.model.vision_probe.mlp[-1].out_features == NF + 1
    x = torch.zeros(NF + 1)
    x[-1] = 10.0  # 10 m in units of 2 m
    assert vision_probe_normalise(x)[-1].item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="fields"):
        vision_probe_units(torch.zeros(NF + 2))
    # a checkpoint written before the flag existed (no key in its loss config) is a lane-only probe
    d = cfg.to_dict()
    d["loss"].pop("vision_probe_lead")
    assert type(cfg).from_dict(d).loss.vision_probe_lead is False


def test_read_road_and_open_loop_probe_errors(proc):
    """`Planner.read_road` returns the head's output in SI units; the open-loop rows carry the probe
    errors beside the "centred and straight" baseline, per group, over the valid targets only."""
    from cordillera.model.inference import Planner
    from cordillera.train.evaluate import vision_probe_errors

    torch.manual_seed(0)
    planner = Planner(CordilleraVLA(_probe_config()), proc)
    s = make_samples(1, seed=4)[0]
    read = planner.read_road({k: s[k] for k in ("image_frames", "camera_indices", "ego_history_xyz", "ego_history_rot")})
    assert read.shape == (1, NF)
    m = planner.model.model
    b = proc([s])
    with torch.no_grad():
        _, _, _, tokens, _ = m.stage1_losses(*[b[k] for k in STAGE1_ARGS], b["labels"])
        ref = vision_probe_units(m.vision_probe(tokens))
    assert torch.allclose(read, ref, atol=1e-5)
    pred = np.array([0.1, 0.0, 0.01, 0.02, 0.03, 0.04])
    lane = np.array([0.3, 0.01, 0.0, 0.0, 0.05, 0.5])
    valid = np.array([True, True, True, True, True, False])
    row = vision_probe_errors(pred, lane, valid)
    deg = 180 / math.pi
    assert row["probe_offset_m_err"] == pytest.approx(0.2) and row["probe_offset_m_err_zero"] == pytest.approx(0.3)
    assert row["probe_heading_deg_err"] == pytest.approx(0.01 * deg)
    assert row["probe_bearing_deg_err"] == pytest.approx((0.01 + 0.02 + 0.02) / 3 * deg)
    assert row["probe_bearing_deg_err_zero"] == pytest.approx(0.05 / 3 * deg)
    assert vision_probe_errors(pred, lane, np.zeros(NF, bool)) == {}
    assert Planner(CordilleraVLA(tiny_config()), proc).read_road(s) is None


def test_collate_adds_lane_targets(proc):
    from cordillera.train.data import Collate

    la = LaneAhead(_Reader(10.0, 0.5, 0.02))
    la._scenarios = {f"clip{i}": SimpleNamespace(map=_map(), ego=SimpleNamespace(x_m=10.0, y_m=0.0, yaw_rad=0.0,
                                                                                 route_lane_ids=("a", "b")))
                     for i in range(2)}  # fmt: skip
    samples = [dict(s, t0_us=0) for s in make_samples(2, seed=3)]
    batch = Collate(proc, lane_ahead=la)(samples)
    assert batch[LANE_AHEAD].shape == (2, NF) and batch[LANE_AHEAD_VALID].all()
    assert batch[LANE_AHEAD][0, 0].item() == pytest.approx(0.5)
    assert LANE_AHEAD not in Collate(proc)(samples)
    torch.manual_seed(0)
    assert "vision_probe" in CordilleraVLA(_probe_config())(batch, stage="stage1")[1]


def test_swapped_cameras_take_another_clips_images():
    """The benchmarks' "swapped" control: each sample gets whole-sample rows of another clip when the
    batch allows (samples of one clip sit next to each other), and says how many could not."""
    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    from openloop_paired import swapped_cameras

    rows = 3  # image rows per sample
    px = torch.arange(4 * rows, dtype=torch.float32)[:, None].repeat(1, 2)  # sample i owns rows 3i..3i+2
    out, same = swapped_cameras(px, ["a", "a", "b", "c"])
    # shift 1 would leave sample 0 with "a"; shift 2 moves every sample to another clip
    assert same == 0 and torch.equal(out[:, 0], torch.tensor([6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5.0]))
    out, same = swapped_cameras(px, ["a", "a", "a", "b"])  # no shift works: half the batch
    assert same == 2 and torch.equal(out, px.roll(-2 * rows, dims=0))
