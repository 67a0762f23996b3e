"""The lane reader (stage-2 module handing the cameras' lane reading to the action expert): it starts as the
plain expert, reads only each camera's last frame through its own vision tower, its loss trains the reader and
the flow-matching loss only the expert's use of it, and it travels through stage-2 set-up and save/load."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_synth import make_samples, tiny_config, tiny_config_with_loss, with_lane_targets  # noqa: E402

from cordillera.model.modeling import LANE_AHEAD, LANE_AHEAD_VALID, CordilleraVLA, prompt_tensors  # noqa: E402

torch.set_num_threads(1)


def _reader_config(weight=1.0):
    return tiny_config_with_loss(lane_reader_weight=weight)


@pytest.fixture(scope="module")
def proc():
    from cordillera.model.processor import VLAProcessor
    from cordillera.model.tokenizer import load_tokenizer

    return VLAProcessor(_reader_config(), load_tokenizer(_reader_config()))


def _plan(vla, batch, noise):
    with torch.no_grad():
        return vla.sample_trajectories(batch, num_samples=2, fast=True, noise=noise, flow_steps=3).xyz


def test_reader_starts_as_the_plain_expert_and_reads_only_last_frames(proc):
    torch.manual_seed(0)
    vla = CordilleraVLA(_reader_config()).eval()
    plain = CordilleraVLA(tiny_config()).eval()
    missing, unexpected = plain.load_state_dict(vla.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith("model.lane_reader.") for k in unexpected)
    samples = make_samples(2, seed=3, frames=2)
    batch = proc(samples)
    noise = torch.randn(2, 2, 64, 2, generator=torch.Generator().manual_seed(1))
    # to_expert is zero at initialisation: the same trajectories as the model without a reader
    assert torch.equal(_plan(vla, batch, noise), _plan(plain, batch, noise))
    reader = vla.model.lane_reader
    with torch.no_grad():
        base = reader.read(batch["pixel_values"], batch["image_grid_thw"], 2)
        older = [dict(s, image_frames=s["image_frames"].clone()) for s in samples]
        for s in older:
            s["image_frames"][:, 0] = 255 - s["image_frames"][:, 0]  # every camera's older frame
        assert torch.allclose(reader.read(proc(older)["pixel_values"], batch["image_grid_thw"], 2), base, atol=1e-6)
        last = [dict(s, image_frames=s["image_frames"].clone()) for s in samples]
        last[1]["image_frames"][1, 1] = 255 - last[1]["image_frames"][1, 1]  # row 1, camera 1, last frame
        changed = reader.read(proc(last)["pixel_values"], batch["image_grid_thw"], 2)
    assert torch.equal(changed[0], base[0]) and not torch.allclose(changed[1], base[1], atol=1e-4)
    # once the expert uses the reading, what the last frames show changes the plan
    with torch.no_grad():
        reader.to_expert.weight.normal_(0.0, 1.0)
    assert not torch.allclose(_plan(vla, proc(last), noise)[1], _plan(vla, batch, noise)[1], atol=1e-4)
    with pytest.raises(ValueError, match="do not split into 3 rows"):
        reader.read(batch["pixel_values"], batch["image_grid_thw"], 3)


def test_stage2_loss_trains_the_reader_and_the_expert_separately(proc):
    torch.manual_seed(0)
    vla = CordilleraVLA(_reader_config(0.5))
    vla.model.vlm.requires_grad_(False)
    batch = with_lane_targets(proc(make_samples(2, seed=2)))
    g = torch.Generator().manual_seed(0)
    loss, logs = vla(batch, stage="stage2", generator=g)
    assert loss.item() == pytest.approx(logs["fm"] + 0.5 * logs["lane_reader"], rel=1e-5) and logs["lane_reader"] > 0
    loss.backward()
    r = vla.model.lane_reader
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in r.visual.parameters())
    assert r.to_expert.weight.grad.abs().sum() > 0  # the FM loss reaches the (zero) map into the expert
    assert all(p.grad is None for p in vla.model.vlm.parameters())
    # the FM loss alone does not reach what the reader reads (the reading is detached)
    vla.zero_grad()
    _, logs = vla({k: v for k, v in batch.items() if k not in (LANE_AHEAD, LANE_AHEAD_VALID)}, stage="stage2",
                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert "lane_reader" not in logs
    vla.zero_grad()
    vla.model.stage2_losses(*prompt_tensors(batch), batch["actions"].float(),
                            torch.randn(2, 64, 2), torch.rand(2),
                            r.expert_offset(r.read(batch["pixel_values"], batch["image_grid_thw"], 2))).mean().backward()
    assert all(p.grad is None for p in r.visual.parameters()) and all(p.grad is None for p in r.head.parameters())


def test_stage2_build_copies_the_backbone_tower_and_checkpoints_round_trip(tmp_path):
    from cordillera.train import loop, stage2
    from cordillera.train.config import TrainConfig

    torch.manual_seed(0)
    CordilleraVLA(tiny_config()).save_pretrained(tmp_path / "s1")
    cfg = TrainConfig(stage="stage2", init_from=str(tmp_path / "s1"), lane_reader_weight=0.5, progress=False,
                      lane_reader_lead=True, lane_reader_input="bounded", tensorboard=False,
                      checkpoint=dict(out_dir=str(tmp_path / "s2")))  # fmt: skip
    vla = stage2.build_model(cfg, loop.RunData(None, None))
    assert vla.cfg.loss.lane_reader_weight == 0.5 and vla.cfg.loss.reads_lead
    assert vla.cfg.loss.lane_reader_input == "bounded" and vla.model.lane_reader.to_expert.in_features == 7
    r = vla.model.lane_reader
    for k, v in vla.model.vlm.model.visual.state_dict().items():
        assert torch.equal(r.visual.state_dict()[k], v), k
    assert all(p.requires_grad for p in r.parameters()) and not any(p.requires_grad for p in vla.model.vlm.parameters())
    with torch.no_grad():
        r.to_expert.weight.normal_()
    vla.save_pretrained(tmp_path / "out")
    back = CordilleraVLA.from_pretrained(tmp_path / "out")
    for k, v in r.state_dict().items():
        assert torch.equal(back.model.lane_reader.state_dict()[k], v), k
    assert back.cfg.loss == vla.cfg.loss and back.model.lane_reader.bounded
    with pytest.raises(ValueError, match="the lane reader trains in stage 2"):
        TrainConfig(stage="stage1", lane_reader_weight=1.0)
    with pytest.raises(ValueError, match="lane_reader_lead without a lane reader"):
        TrainConfig(stage="stage2", lane_reader_lead=True)


def test_bf16_inference_keeps_the_reader_fp32(proc):
    torch.manual_seed(0)
    vla = CordilleraVLA(_reader_config()).eval()
    with torch.no_grad():
        vla.model.lane_reader.to_expert.weight.normal_(0.0, 0.1)
    batch = proc(make_samples(2, seed=3))
    noise = torch.randn(2, 2, 64, 2, generator=torch.Generator().manual_seed(1))
    reader = vla.model.lane_reader

    def run():
        with torch.no_grad():
            reading = reader.read(batch["pixel_values"], batch["image_grid_thw"], 2)
            return reading, vla.sample_trajectories(batch, num_samples=2, fast=True, noise=noise, flow_steps=3).actions

    reading, ref = run()
    vla.to_inference_dtype("bfloat16")
    assert all(p.dtype == torch.float32 for p in reader.parameters())
    assert vla.model.expert.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    reading_bf16, out = run()
    assert torch.equal(reading_bf16, reading)  # the reader itself is untouched by the cast
    # the bf16 expert runs on it (this random tiny model's bf16 actions are ~17 % off fp32 with or without a reader)
    assert out.dtype == torch.float32 and torch.isfinite(out).all() and not torch.equal(out, ref)


def test_bounded_reader_features_hand_values():
    from cordillera.model.modeling import LEAD_CLEAR_M, reader_features, vision_probe_normalise

    # offset 0.5 m, heading 0.05 rad, bearings −0.05 / 0 / 0.025 / 0.1 rad, lead gap 15 m; then gap beyond clear
    si = torch.tensor([[0.5, 0.05, -0.05, 0.0, 0.025, 0.1, 15.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2 * LEAD_CLEAR_M]])
    got = reader_features(vision_probe_normalise(si))
    t1, th = torch.tanh(torch.tensor(1.0)).item(), torch.tanh(torch.tensor(0.5)).item()
    want = torch.tensor([[t1, t1, -t1, 0.0, th, torch.tanh(torch.tensor(2.0)).item(), torch.exp(torch.tensor(-1.0)).item()],
                         [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, torch.exp(torch.tensor(-LEAD_CLEAR_M / 15.0)).item()]])  # fmt: skip
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(reader_features(vision_probe_normalise(si[:, :6])), want[:, :6], atol=1e-6)  # lane only


def test_lead_reader_reads_the_gap_and_its_loss_counts_it(proc):
    from cordillera.model.modeling import LEAD_FIELDS, PROBE_FIELDS

    torch.manual_seed(0)
    vla = CordilleraVLA(tiny_config_with_loss(lane_reader_weight=1.0, lane_reader_lead=True,
                                              lane_reader_input="bounded")).eval()  # fmt: skip
    plain = CordilleraVLA(tiny_config()).eval()
    plain.load_state_dict(vla.state_dict(), strict=False)
    r = vla.model.lane_reader
    assert r.head.fields == PROBE_FIELDS + LEAD_FIELDS and r.to_expert.in_features == 7 and r.bounded
    batch = with_lane_targets(proc(make_samples(2, seed=2)))
    noise = torch.randn(2, 2, 64, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(_plan(vla, batch, noise), _plan(plain, batch, noise))  # still zero at initialisation
    # a batch carrying the lead gap (7 fields): the reader's loss changes with the lead target alone
    batch[LANE_AHEAD] = torch.cat([batch[LANE_AHEAD], torch.tensor([[10.0], [60.0]])], dim=1)
    batch[LANE_AHEAD_VALID] = torch.ones(2, 7, dtype=torch.bool)
    with torch.no_grad():
        _, a = vla(batch, stage="stage2", generator=torch.Generator().manual_seed(0))
        batch[LANE_AHEAD][:, 6] += 20.0
        _, b = vla(batch, stage="stage2", generator=torch.Generator().manual_seed(0))
    assert b["lane_reader"] > a["lane_reader"] and b["fm"] == pytest.approx(a["fm"], rel=1e-6)
    # read_road (what open-loop evaluation scores) is the reader's reading in SI, lead gap included
    from cordillera.model.inference import Planner
    from cordillera.model.modeling import vision_probe_units

    s = make_samples(1, seed=4)[0]
    read = Planner(vla, proc).read_road({k: s[k] for k in ("image_frames", "camera_indices", "ego_history_xyz",
                                                          "ego_history_rot")})  # fmt: skip
    with torch.no_grad():
        b1 = proc([s])
        ref = vision_probe_units(r.read(b1["pixel_values"], b1["image_grid_thw"], 1))
    assert read.shape == (1, 7) and torch.allclose(read, ref, atol=1e-6)
    with pytest.raises(ValueError, match="lane_reader_lead without a lane reader"):
        tiny_config_with_loss(lane_reader_lead=True)
    with pytest.raises(ValueError, match="lane_reader_input 'squashed'"):
        tiny_config_with_loss(lane_reader_weight=1.0, lane_reader_input="squashed")


def test_read_road_builds_no_graph(proc):
    vla = CordilleraVLA(_reader_config())
    b = proc(make_samples(1, seed=4))
    read = vla.read_road(b)
    assert read.shape == (1, 6) and not read.requires_grad and vla.road_fields() == vla.model.lane_reader.head.fields
