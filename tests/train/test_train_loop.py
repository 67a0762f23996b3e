"""Training plumbing: schedule, decay groups, gradient accumulation, atomic checkpoints, exact
resume, data order, config strictness. Tiny synthetic batches and a shrunk nano config."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_synth import make_samples, tiny_config  # noqa: E402

from cordillera.config import ConfigError  # noqa: E402
from cordillera.train import data as loop_data  # noqa: E402
from cordillera.train import loop, stage1, stage2  # noqa: E402
from cordillera.train.config import NanoConfig, OptimSettings, TrainConfig, load_train_config, parse_overrides  # noqa: E402

torch.set_num_threads(1)


def _vla(seed=0, use_coc=True):
    from cordillera.model.modeling import CordilleraVLA

    torch.manual_seed(seed)
    return CordilleraVLA(tiny_config(use_coc))


# ---------------------------------------------------------------------------------------------
# schedule
def test_lr_at_hand_values():
    o = OptimSettings(lr=1.0, min_lr=0.1, warmup_steps=4, max_steps=14)
    assert loop.lr_at(0, o) == pytest.approx(0.25)  # (0+1)/4
    assert loop.lr_at(1, o) == pytest.approx(0.5)
    assert loop.lr_at(3, o) == pytest.approx(1.0)  # end of warm-up
    assert loop.lr_at(4, o) == pytest.approx(1.0)  # cosine progress 0
    assert loop.lr_at(9, o) == pytest.approx(0.1 + 0.5 * 0.9)  # progress 0.5 → midway
    assert loop.lr_at(14, o) == pytest.approx(0.1)  # min at max_steps
    assert loop.lr_at(100, o) == pytest.approx(0.1)  # and after
    # cosine at progress 0.25: min + (lr-min)(1+cos(π/4))/2
    o2 = OptimSettings(lr=2.0, min_lr=0.0, warmup_steps=0, max_steps=8)
    assert loop.lr_at(2, o2) == pytest.approx(2.0 * (1 + math.cos(math.pi / 4)) / 2)


def test_lr_multiplier_longest_prefix():
    m = {"vlm": 2.0, "vlm.model.visual": 0.1}
    assert loop._multiplier("vlm.model.visual.blocks.0.attn.qkv.weight", m) == 0.1
    assert loop._multiplier("vlm.model.language_model.layers.0.mlp.up_proj.weight", m) == 2.0
    assert loop._multiplier("vlm.model.visualx.weight", {"vlm.model.visual": 0.1}) == 1.0  # not a path prefix
    assert loop._multiplier("expert.layers.0.weight", m) == 1.0


def test_decay_groups_and_multipliers(capsys):
    vla = _vla()
    o = OptimSettings(lr=1e-3, min_lr=1e-4, warmup_steps=0, weight_decay=0.1,
                      lr_multipliers={"vlm.model.visual": 0.1})
    groups = loop.param_groups(vla.model.named_parameters(), o)
    printed = capsys.readouterr().out
    named = dict(vla.model.named_parameters())
    seen = set()
    for g in groups:
        for n in g["names"]:
            p = named[n]
            assert (p.ndim >= 2) == (g["weight_decay"] == 0.1), n
            assert g["lr_mult"] == (0.1 if n.startswith("vlm.model.visual.") else 1.0), n
            seen.add(n)
        assert f"optimizer group {g['name']}: {len(g['params'])} tensors" in printed
    assert seen == set(named)  # every trainable parameter in exactly one group
    assert {g["name"] for g in groups} == {"decay@x1", "no_decay@x1", "decay@x0.1", "no_decay@x0.1"}
    opt = loop.make_optimizer(vla.model.named_parameters(), o, verbose=False)
    assert loop.set_lr(opt, 10, o) == pytest.approx(loop.lr_at(10, o))
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(loop.lr_at(10, o) * g["lr_mult"])


# ---------------------------------------------------------------------------------------------
# gradient accumulation
def _grads(vla):
    return {n: p.grad.clone() for n, p in vla.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_grad_accumulation_equals_big_batch(proc, stage):
    """accum 2 × batch 2 == batch 4 (same samples; equal token counts; fixed noise and t)."""
    samples = make_samples(4, seed=3)
    for s in samples:
        s["cot"] = "Stop for the red light ahead."  # equal lengths: token means agree exactly
    vla = _vla()
    big = proc(samples)
    noise = torch.randn(4, 64, 2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.1, 0.5, 0.7, 0.95])

    def loss_for(batch, sl):
        if stage == "stage1":
            return vla(batch, stage="stage1")
        return vla(batch, stage="stage2", noise=noise[sl], t=t[sl])

    vla.zero_grad()
    loop.accumulate_gradients(vla, lambda b: loss_for(b, slice(0, 4)), [big])
    g_big = _grads(vla)
    vla.zero_grad()
    halves = [proc(samples[:2]), proc(samples[2:])]
    sls = iter([slice(0, 2), slice(2, 4)])
    logs = loop.accumulate_gradients(vla, lambda b: loss_for(b, next(sls)), halves)
    g_acc = _grads(vla)
    assert set(g_big) == set(g_acc) and len(g_big) > 10
    worst = max(float((g_big[n] - g_acc[n]).abs().max()) for n in g_big)
    assert worst < 1e-5, worst
    assert "loss" in logs


# ---------------------------------------------------------------------------------------------
# checkpoints
def _save(out, step, vla, opt, gen=None, keep_last=3):
    return loop.save_checkpoint(out, step, vla.cfg, vla.model.state_dict(), opt, {"data": {"epoch": 0, "position": step}},
                                {"noise": gen or torch.Generator().manual_seed(step)}, keep_last=keep_last)


def test_checkpoint_crash_mid_save_keeps_previous(tmp_path, monkeypatch):
    vla = _vla()
    opt = loop.make_optimizer(vla.model.named_parameters(), OptimSettings(warmup_steps=0), verbose=False)
    first = _save(tmp_path, 1, vla, opt)
    saved = {k: v.clone() for k, v in vla.model.state_dict().items()}
    with torch.no_grad():
        for p in vla.model.parameters():
            p.add_(1.0)

    def boom(*a, **k):
        raise OSError("disk full")

    # crash while writing the optimizer state (after the weights were written)
    monkeypatch.setattr(loop.torch, "save", boom)
    with pytest.raises(OSError):
        _save(tmp_path, 2, vla, opt)
    monkeypatch.undo()
    assert loop.latest_checkpoint(tmp_path) == first
    assert not (tmp_path / "step-000002").exists()
    # crash after the rename, before `latest` moves: latest still names step 1
    monkeypatch.setattr(loop, "_write_text_atomic", boom)
    with pytest.raises(OSError):
        _save(tmp_path, 2, vla, opt)
    monkeypatch.undo()
    assert loop.latest_checkpoint(tmp_path) == first
    fresh = _vla(seed=5)
    ts = loop.load_checkpoint(first, fresh.model)
    assert ts["step"] == 1 and ts["data"] == {"epoch": 0, "position": 1}
    for k, v in fresh.model.state_dict().items():
        assert torch.equal(v, saved[k]), k
    # the next good save replaces the orphan and moves `latest`; old ones are pruned to keep_last
    _save(tmp_path, 2, vla, opt, keep_last=1)
    assert loop.latest_checkpoint(tmp_path).name == "step-000002"
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-000002"]
    assert not list(tmp_path.glob(".tmp-*"))
    # weights are safetensors, never pickles
    assert (tmp_path / "step-000002" / "model.safetensors").exists()


def test_resumable_sampler_order():
    s = loop.ResumableSampler(10, seed=7)
    e0, e1 = s.order(0), s.order(1)
    assert sorted(e0) == list(range(10)) and e0 != e1
    s.epoch, s.position = 1, 4
    assert list(s) == e1[4:]
    r1 = loop.ResumableSampler(10, seed=7, rank=1, world_size=2)
    assert r1.order(0) == e0[1::2]
    stream = loop.BatchStream(list(range(10)), lambda b: b, batch_size=3, seed=7)
    seen = [next(stream) for _ in range(4)]  # 3 batches per epoch (drop_last), then epoch 1
    assert seen[:3] == [e0[0:3], e0[3:6], e0[6:9]] and seen[3] == e1[0:3]
    assert stream.state_dict() == {"epoch": 1, "position": 3}
    other = loop.BatchStream(list(range(10)), lambda b: b, batch_size=3, seed=7)
    other.load_state_dict({"epoch": 0, "position": 6})
    assert next(other) == e0[6:9] and next(other) == e1[0:3]


def test_weighted_sampler_draws_in_proportion_and_resumes():
    w = [0.0, 1.0, 3.0, 0.0]
    s = loop.ResumableSampler(4, seed=3, weights=w)
    e0 = s.order(0)
    assert len(e0) == 4 and e0 == s.order(0) and set(e0) <= {1, 2}  # zero weight: never drawn
    s.epoch, s.position = 0, 2
    assert list(s) == e0[2:]
    draws = np.concatenate([loop.ResumableSampler(4, seed=k, weights=w).order(0) for k in range(3000)])
    share = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(share, [0.0, 0.25, 0.75, 0.0], atol=0.01)  # 12000 draws: sd 0.004
    for bad in ([1.0, 1.0], [1.0, -1.0, 1.0, 1.0], [0.0] * 4, [float("nan"), 1.0, 1.0, 1.0]):
        with pytest.raises(ValueError, match="weights"):
            loop.ResumableSampler(4, weights=bad)


def test_history_surprise_is_zero_on_the_historys_own_arc_and_the_stopping_distance_otherwise():
    from cordillera.train.data import hard_sample_weights, history_surprise_m

    def arc(v, w, t):  # poses of constant speed v and yaw rate w from the origin, heading +x
        t = np.asarray(t, float)
        if abs(w) < 1e-12:
            return np.stack([v * t, 0 * t, 0 * t], -1), np.zeros_like(t)
        return np.stack([v * np.sin(w * t) / w, v * (1 - np.cos(w * t)) / w, 0 * t], -1), w * t

    def rot(yaw):
        c, s_ = np.cos(yaw), np.sin(yaw)
        r = np.zeros((len(yaw), 3, 3))
        r[:, 0, 0], r[:, 0, 1], r[:, 1, 0], r[:, 1, 1], r[:, 2, 2] = c, -s_, s_, c, 1.0
        return r

    th, tf = np.arange(-15, 1) * 0.1, np.arange(1, 65) * 0.1
    hist, fut = [], []
    for v, w in ((10.0, 0.0), (8.0, 0.2), (8.0, -0.3)):  # a car that keeps its speed and curvature
        hx, hy = arc(v, w, th)
        hist.append((hx, rot(hy)))
        fut.append(arc(v, w, tf)[0])
    hist.append((arc(10.0, 0.0, th)[0], rot(np.zeros(16))))  # 10 m/s, then standing still at t0
    fut.append(np.zeros((64, 3)))
    e = history_surprise_m(np.stack([h[0] for h in hist]), np.stack([h[1] for h in hist]), np.stack(fut))
    np.testing.assert_allclose(e[:3], 0.0, atol=1e-6)
    assert e[3] == pytest.approx(10.0 * tf.mean())  # 32.5 m: the mean distance a 10 m/s car covers in 6.4 s

    class Cache(loop_data.SampleCache):  # the arrays only: weights read no frames
        def __init__(self, arrays):
            self.arrays = arrays

    from cordillera.data import keys as K

    cache = Cache({K.EGO_HISTORY_XYZ: np.stack([h[0] for h in hist]), K.EGO_HISTORY_ROT: np.stack([h[1] for h in hist]),
                   K.EGO_FUTURE_XYZ: np.stack(fut)})
    w = hard_sample_weights(torch.utils.data.Subset(cache, [3, 0]), 2.0)
    np.testing.assert_allclose(w, [1.0 + 2.0 * 2.0, 1.0], atol=1e-6)  # e = (32.5, 0), mean 16.25
    with pytest.raises(ValueError, match="sample cache"):
        hard_sample_weights(list(range(3)), 1.0)


# ---------------------------------------------------------------------------------------------
# exact resume
def _cfg(out, stage="stage2", steps=6, **kw):
    return TrainConfig(stage=stage, num_threads=1, progress=False, tensorboard=False, log_every=1,
                       optim=dict(lr=1e-3, min_lr=1e-4, warmup_steps=2, max_steps=steps, batch_size=2,
                                  ema_decay=0.9, **kw.pop("optim", {})),
                       checkpoint=dict(out_dir=str(out), save_every=3, keep_last=2),
                       eval=dict(every=100, num_samples=2, batch_size=2, k=2, flow_steps=2, coc_samples=0, max_new_tokens=8), **kw)  # fmt: skip


def _stage2_vla():
    vla = _vla()
    vla.model.vlm.requires_grad_(False)
    return vla


def _train_losses(out):
    import csv

    with open(Path(out) / "metrics.csv") as f:
        return [(int(r["step"]), r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def test_exact_resume_after_kill(tmp_path):
    data = loop.RunData(make_samples(6), None)
    straight = loop.run_stage(_cfg(tmp_path / "a"), _stage2_vla(), data, stage2.loss_fn, stage2._freeze_eval,
                              desc="straight")  # fmt: skip
    assert straight.step == 6
    # same run killed after step 3 (the checkpoint at 3 is the last thing it wrote) …
    killed = loop.run_stage(_cfg(tmp_path / "b"), _stage2_vla(), data, stage2.loss_fn, stage2._freeze_eval,
                            stop_after=3)  # fmt: skip
    assert killed.step == 3 and not (tmp_path / "b" / "final").exists()
    # … and resumed in a fresh model object with a different random init
    torch.manual_seed(999)
    from cordillera.model.modeling import CordilleraVLA

    fresh = CordilleraVLA(tiny_config())
    fresh.model.vlm.requires_grad_(False)
    resumed = loop.run_stage(_cfg(tmp_path / "b"), fresh, data, stage2.loss_fn, stage2._freeze_eval)
    assert resumed.step == 6
    # the result accounts for all six steps: the first process's time up to its checkpoint is carried over
    assert straight.resumed_at is None and straight.process_seconds == straight.seconds
    assert resumed.resumed_at == 3 and 0 < resumed.process_seconds < resumed.seconds
    assert resumed.samples == straight.samples == 6 * _cfg(tmp_path / "c").optim.batch_size
    assert resumed.samples_per_s == pytest.approx(resumed.samples / resumed.seconds)
    a, b = _train_losses(tmp_path / "a"), _train_losses(tmp_path / "b")
    assert [s for s, _ in a] == list(range(1, 7)) and a == b  # bit-identical loss strings
    from safetensors.torch import load_file

    wa = load_file(str(tmp_path / "a" / "final" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "final" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# ---------------------------------------------------------------------------------------------
# configs
def test_config_unknown_keys_fail_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        load_train_config("train_stage1", TrainConfig, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_train_config("train_nano", NanoConfig, ["stage1.optim.bogus=1"])
    cfg = load_train_config("train_stage1", TrainConfig, ["optim.lr=3e-4", "use_coc=false", "data.dir=/x"])
    assert cfg.optim.lr == 3e-4 and cfg.use_coc is False and cfg.data.dir == "/x"
    assert cfg.optim.lr_multipliers == {"vlm.model.visual": 0.1}
    assert load_train_config("train_stage2", TrainConfig).stage == "stage2"
    nano = load_train_config("train_nano", NanoConfig)
    assert nano.stage1.stage == "stage1" and nano.stage2.stage in ("stage2", "joint")
    assert parse_overrides(["a.b=[1, 2]", "c=null"]) == {"a.b": [1, 2], "c": None}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])
    with pytest.raises(ConfigError, match="min_lr"):
        load_train_config("train_stage1", TrainConfig, ["optim.min_lr=1.0"])


def test_split_by_scenario():
    from cordillera.train.data import split_by_scenario

    keys = {f"c{i}": ("fam", i // 2) for i in range(20)}  # 10 scenarios, 2 clips each
    train, val = split_by_scenario(keys, val_fraction=0.2, seed=0)
    assert len(val) == 4 and len(train) == 16 and not set(train) & set(val)
    assert {keys[c] for c in val}.isdisjoint({keys[c] for c in train})  # never split a scenario
    assert split_by_scenario(keys, 0.2, seed=0) == (train, val)  # deterministic
    t2, v2 = split_by_scenario(keys, val_seeds=[3])
    assert v2 == ["c6", "c7"] and len(t2) == 18


def test_split_clips_validates_on_undisturbed_drives_only():
    """A held-out scenario whose clip was driven with a DART push leaves validation (and is not
    trained on either); the same data without pushes validates on the full held-out set."""
    from cordillera.data.generate import PERTURBATION
    from cordillera.sim.policies.perturbed import Perturbation
    from cordillera.train.config import DataSettings
    from cordillera.train.data import split_clips

    push = Perturbation(t_start_us=3_000_000, t_end_us=3_500_000, yaw_offset_rad=0.07).to_json()

    class Reader:
        def __init__(self, pushed):
            self.meta = {f"c{i}": {"family": "fam", "seed": i, PERTURBATION: push if i in pushed else ""}
                         for i in range(20)}

        def clips(self):
            return sorted(self.meta)

        def metadata(self, cid):
            return self.meta[cid]

    d = DataSettings(val_fraction=0.2)
    train, val = split_clips(Reader(set()), d)
    assert len(val) == 4 and len(train) == 16
    pushed = {int(val[0][1:]), int(train[0][1:])}  # one held-out clip and one training clip pushed
    t2, v2 = split_clips(Reader(pushed), d)
    assert v2 == val[1:] and t2 == train  # the pushed held-out clip is gone from both sides


def test_split_keeps_on_policy_clips_with_their_scenario_and_out_of_validation():
    """An on-policy (handover) clip shares its scenario key with the expert's clip: it trains when its
    scenario trains and is dropped when its scenario is held out; the expert's clips split as before."""
    from cordillera.data.generate import HANDOVER
    from cordillera.sim.policies.perturbed import Handover
    from cordillera.train.config import DataSettings
    from cordillera.train.data import split_clips

    hand = Handover(0, 5_000_000, "ckpt").to_json()

    class Reader:
        def __init__(self, with_handover):
            self.meta = {f"c{i:02d}": {"family": "fam", "seed": i, HANDOVER: ""} for i in range(20)}
            self.meta.update({f"h{i:02d}": {"family": "fam", "seed": i, HANDOVER: hand} for i in with_handover})

        def clips(self):
            return sorted(self.meta)

        def metadata(self, cid):
            return self.meta[cid]

    d = DataSettings(val_fraction=0.2)
    train, val = split_clips(Reader(()), d)
    t2, v2 = split_clips(Reader(range(20)), d)
    assert v2 == val  # the expert's held-out clips only
    assert t2 == sorted(train + [f"h{c[1:]}" for c in train])  # every training scenario's on-policy clip trains
    assert split_clips(Reader(range(20)), DataSettings(val_fraction=0.2, on_policy=False)) == (train, val)


class _FakeEgo:
    """Drives straight for 30 m at 10 m/s, then a left quarter circle of radius 20 m."""

    end_us = 10_000_000

    def poses(self, t_us):
        import numpy as np

        from cordillera.geometry.pose import quat_from_yaw

        s = np.asarray(t_us, dtype=np.float64) * 1e-5  # 10 m/s
        xyz = np.zeros((len(s), 3))
        yaw = np.zeros(len(s))
        straight = s <= 30.0
        xyz[straight, 0] = s[straight]
        a = (s[~straight] - 30.0) / 20.0
        xyz[~straight, 0] = 30.0 + 20.0 * np.sin(a)
        xyz[~straight, 1] = 20.0 * (1 - np.cos(a))
        yaw[~straight] = a
        return xyz, np.stack([quat_from_yaw(y) for y in yaw])


class _FakeReader:
    def egomotion(self, clip_id):
        return _FakeEgo()


def test_nav_text_from_driven_route_and_dropout(proc):
    from cordillera.train.data import Collate, nav_text_at

    # route points every 80/19 m: the first segment turned by >= 8° starts at 8 × 4.21 = 33.7 m → "35m"
    assert nav_text_at(_FakeReader(), "c", 0) == "Turn left in 35m"
    assert nav_text_at(_FakeReader(), "c", 9_000_000) == "Continue straight"  # 10 m of arc left, no turn in it
    samples = make_samples(40)
    for s in samples:
        s["nav_text"], s["t0_us"] = "Turn left in 30m", 2_000_000
    full = Collate(proc, nav_dropout=0.0)
    assert [full._nav(s) for s in samples] == ["Turn left in 30m"] * 40
    part = Collate(proc, nav_dropout=0.25)
    kept = [part._nav(s) for s in samples]
    assert kept == [part._nav(s) for s in samples]  # deterministic per (clip, t0): resume stays exact
    assert 3 <= kept.count(None) <= 20
    batch = full(samples[:2])
    assert "<|route_start|>Turn left in 30m<|route_end|>" in proc.tokenizer.decode(batch["input_ids"][0].tolist())


def test_history_dropout_gives_a_constant_velocity_history_to_a_fixed_share(proc):
    import numpy as np

    from cordillera.data import keys as K
    from cordillera.train.data import Collate, constant_velocity_history

    # any driven history (here slowing through a left curve) whose last 0.1 s step is 0.9 m long →
    # 16 poses 0.9 m apart straight along +x, ending at the origin
    t = np.arange(16)
    hist = np.stack([-(15 - t) * 1.2, 0.02 * (15 - t) ** 2, np.zeros(16)], -1)
    hist[-2] = [-0.9, 0.01, 0.0]
    xyz, rot = constant_velocity_history(hist)
    assert np.allclose(xyz[:, 0], -np.hypot(0.9, 0.01) * (15 - t), atol=1e-5) and np.all(xyz[:, 1:] == 0)
    assert xyz.dtype == np.float32 and np.array_equal(rot, np.broadcast_to(np.eye(3), (16, 3, 3)))
    samples = make_samples(40)
    for i, s in enumerate(samples):
        s[K.T0_US] = 2_000_000 + 100_000 * i
    keep = Collate(proc)
    assert all(keep._history(s)[0] is s[K.EGO_HISTORY_XYZ] for s in samples)
    part = Collate(proc, history_dropout=0.5)
    dropped = [part._history(s)[0] is not s[K.EGO_HISTORY_XYZ] for s in samples]
    assert dropped == [part._history(s)[0] is not s[K.EGO_HISTORY_XYZ] for s in samples]  # fixed per (clip, t0)
    assert 8 <= sum(dropped) <= 32
    # a dropped sample's prompt holds the constant-velocity history's tokens, the others their own
    i = dropped.index(True)
    got = part([samples[i]])["input_ids"][0]
    cv = keep([{**samples[i], K.EGO_HISTORY_XYZ: constant_velocity_history(samples[i][K.EGO_HISTORY_XYZ])[0],
                K.EGO_HISTORY_ROT: constant_velocity_history(samples[i][K.EGO_HISTORY_XYZ])[1]}])["input_ids"][0]
    assert torch.equal(got, cv)
    j = dropped.index(False)
    assert torch.equal(part([samples[j]])["input_ids"][0], keep([samples[j]])["input_ids"][0])


def test_coc_swap_gives_a_fixed_share_another_rows_coc_in_stage_2_only(proc):
    from cordillera.data import keys as K
    from cordillera.model.processor import COT_TEXT
    from cordillera.train.config import TrainConfig
    from cordillera.train.data import Collate

    samples = make_samples(3)
    for i, (s, coc) in enumerate(zip(samples, ["Stop", "Stop", "Keep lane"])):
        s[K.T0_US], s[K.COT_KEY] = 2_000_000 + 100_000 * i, coc
    # every row swapped: the next row (cyclically) whose CoC differs
    assert Collate(proc, coc_swap=1.0)._cocs(samples) == ["Keep lane", "Keep lane", "Stop"]
    assert Collate(proc)._cocs(samples) == ["Stop", "Stop", "Keep lane"]
    assert Collate(proc, use_coc=False, coc_swap=1.0)._cocs(samples) == [None, None, None]
    same = [{**s, K.COT_KEY: "Stop"} for s in samples]
    assert Collate(proc, coc_swap=1.0)._cocs(same) == ["Stop"] * 3  # nothing different to swap in
    # the prompt carries the swapped CoC, the labels the sample's own
    batch = Collate(proc, coc_swap=1.0)(samples[1:])
    assert batch[COT_TEXT] == ["Stop", "Keep lane"]
    own = Collate(proc)([{**samples[1], K.COT_KEY: "Keep lane"}, {**samples[2], K.COT_KEY: "Stop"}])
    assert torch.equal(batch["input_ids"], own["input_ids"])
    many = make_samples(40)
    for i, s in enumerate(many):
        s[K.T0_US], s[K.COT_KEY] = 2_000_000 + 100_000 * i, f"coc {i % 2}"
    part = Collate(proc, coc_swap=0.5)
    swapped = [a != s[K.COT_KEY] for a, s in zip(part._cocs(many), many)]
    assert 8 <= sum(swapped) <= 32 and swapped == [a != s[K.COT_KEY] for a, s in zip(part._cocs(many), many)]
    with pytest.raises(ValueError, match="coc_swap > 0 with stage 'stage1'"):
        TrainConfig(stage="stage1", data=dict(coc_swap=0.5))
