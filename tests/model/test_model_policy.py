"""VLAPolicy: the model as a sim policy — inputs at t0 (frames, rig-frame history), warm-up, the plan
it returns, determinism, and a short closed-loop run through the runtime."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from cordillera.model.configuration import DEFAULT_CAMERAS
from cordillera.model.policy import VLAPolicy, VLAPolicyFactory, history_in_rig, medoid_order, select_frames
from cordillera.sim.types import CameraFrame, EgoHistory, Observation, SessionInfo

DT = 100_000


def arc_history(t_now_us: int, n: int = 31, speed_mps: float = 10.0, yaw_rate: float = 0.0, x0=50.0, y0=-20.0,
                yaw0=math.radians(30.0)) -> EgoHistory:
    """n poses every 0.1 s ending at t_now on a circle (straight when yaw_rate = 0) that passes
    (x0, y0) with heading yaw0 at t_now."""
    tau = (np.arange(n) - (n - 1)) * 0.1  # [s] relative to t_now
    yaw = yaw0 + yaw_rate * tau
    if yaw_rate == 0.0:
        x, y = x0 + speed_mps * tau * math.cos(yaw0), y0 + speed_mps * tau * math.sin(yaw0)
    else:
        R = speed_mps / yaw_rate
        x = x0 + R * (np.sin(yaw) - math.sin(yaw0))
        y = y0 - R * (np.cos(yaw) - math.cos(yaw0))
    z = np.zeros(n)
    return EgoHistory(t_us=t_now_us + (tau * 1e6).round().astype(np.int64), xyz_local=np.stack([x, y, z], -1),
                      quat_local=np.stack([z, z, np.sin(yaw / 2), np.cos(yaw / 2)], -1),
                      velocity_rig_mps=np.tile([speed_mps, 0.0, 0.0], (n, 1)), accel_rig_mps2=np.zeros((n, 3)),
                      yaw_rate_radps=np.full(n, yaw_rate))


def frame(t_end_us: int, value: int, hw=(96, 160)) -> CameraFrame:
    return CameraFrame(np.full(hw + (3,), value, np.uint8), t_end_us - 30_000, t_end_us)


def obs_at(t_us: int, history: EgoHistory, cameras=DEFAULT_CAMERAS, value=None, nav="Continue straight") -> Observation:
    v = (t_us // DT) % 250 if value is None else value
    return Observation(t_us, {c: frame(t_us, v) for c in cameras}, history, np.full((20, 3), np.nan), nav)


@pytest.fixture()
def policy(nano_model):
    return VLAPolicy(nano_model, num_samples=2, fast=True, threads=1)


def feed(policy, t_end_us: int, history_fn=arc_history, seed: int = 7, t_start_us: int = 0):
    """start + observations every 0.1 s from t_start to t_end; returns the plans."""
    policy.start(SessionInfo("s", "scn", seed, DEFAULT_CAMERAS))
    plans = []
    for t in range(t_start_us, t_end_us + 1, DT):
        plans.append(policy.plan(obs_at(t, history_fn(t)), t, t + DT))
    return plans


# ---- inputs -----------------------------------------------------------------------------------
def test_select_frames_latest_at_or_before_each_request():
    frames = [frame(t, 0) for t in (50_000, 100_000, 190_000, 250_000, 300_000, 390_000)]
    t0 = 400_000
    req = t0 + np.array([-300_000, -200_000, -100_000, 0])
    # 100 k -> the frame ending exactly then; 200 k -> 190 k; 300 k -> 300 k; 400 k -> 390 k
    assert select_frames(frames, req) == [1, 2, 4, 5]
    # a request with no frame at or before it, and one whose latest frame is too old
    assert select_frames(frames, np.array([40_000, 400_000])) is None
    assert select_frames(frames, np.array([600_000])) is None  # 390 k is 210 ms old
    assert select_frames([], req) is None


def test_policy_frames_are_the_latest_at_or_before_each_request(policy):
    policy.start(SessionInfo("s", "scn", 0, DEFAULT_CAMERAS))
    # frames every 0.1 s but camera time offset by -20 ms, value = frame number; t0 = 0.8 s
    for k, t in enumerate(range(0, 800_001, DT)):
        cams = {c: frame(t - 20_000, k) for c in DEFAULT_CAMERAS}
        plan = policy.plan(Observation(t, cams, arc_history(t), np.full((20, 3), np.nan)), t, t + DT)
    assert not plan.warming_up
    imgs = policy.last_inputs["image_frames"]  # (4, 4, 3, 96, 160)
    assert tuple(imgs.shape) == (4, 4, 3, 96, 160)
    # requests 0.5, 0.6, 0.7, 0.8 s -> frames ending 0.48, 0.58, 0.68, 0.78 s = numbers 5, 6, 7, 8
    assert imgs[:, :, 0, 0, 0].tolist() == [[5, 6, 7, 8]] * 4


@pytest.mark.parametrize("yaw_rate", [0.0, 0.2])
def test_history_is_last_16_poses_in_rig_frame_at_t0(policy, yaw_rate):
    t0 = 2_000_000
    hist = arc_history(t0, n=31, speed_mps=10.0, yaw_rate=yaw_rate)
    plans = feed(policy, t0, history_fn=lambda t: arc_history(t, n=31, speed_mps=10.0, yaw_rate=yaw_rate),
                 t_start_us=t0 - 300_000)
    assert [p.warming_up for p in plans] == [True, True, True, False]
    xyz = policy.last_inputs["ego_history_xyz"].double().numpy()
    rot = policy.last_inputs["ego_history_rot"].double().numpy()
    tau = (np.arange(16) - 15) * 0.1
    if yaw_rate == 0.0:
        want = np.stack([10.0 * tau, 0 * tau, 0 * tau], -1)  # straight: x = v·τ behind the rig
    else:
        R = 10.0 / yaw_rate  # circle through the origin with heading 0 at τ = 0
        want = np.stack([R * np.sin(yaw_rate * tau), R * (1 - np.cos(yaw_rate * tau)), 0 * tau], -1)
    np.testing.assert_allclose(xyz, want, atol=1e-4)
    np.testing.assert_allclose(xyz[-1], 0.0, atol=1e-6)
    np.testing.assert_allclose(np.arctan2(rot[:, 1, 0], rot[:, 0, 0]), yaw_rate * tau, atol=1e-5)
    # the pure function agrees, and older poses do not matter
    xyz2, _ = history_in_rig(arc_history(t0, n=16, yaw_rate=yaw_rate), t0)
    np.testing.assert_allclose(xyz2, xyz, atol=1e-5)
    assert len(hist) == 31


def test_warming_up_until_frames_and_history_cover_the_window(policy):
    policy.start(SessionInfo("s", "scn", 0, DEFAULT_CAMERAS))
    # history of only 1.0 s: never enough, whatever the frames
    short = lambda t: arc_history(t, n=11)  # noqa: E731
    for t in range(0, 600_001, DT):
        p = policy.plan(obs_at(t, short(t)), t, t + DT)
        assert p.warming_up
        p.validate(t)  # a warming-up plan is explicitly valid (the runtime decides)
    assert "ego history" in policy.warmup_reason
    # full history, frames from t = 0: warm until the 0.3 s window has frames
    plans = feed(policy, 500_000)
    assert [p.warming_up for p in plans] == [True, True, True, False, False, False]


def test_session_without_the_model_cameras_is_refused(policy):
    with pytest.raises(ValueError, match="needs cameras"):
        policy.start(SessionInfo("s", "scn", 0, ("camera_front_wide_120fov",)))
    with pytest.raises(ValueError, match="no cameras"):
        policy.start(SessionInfo("s", "scn", 0, ()))


# ---- output -------------------------------------------------------------------------------------
def test_plan_starts_at_origin_65_poses_10hz_finite_yaw_only(policy):
    t_now = 1_000_000
    plan = feed(policy, t_now, t_start_us=t_now - 300_000)[-1]
    assert not plan.warming_up
    plan.validate(t_now)
    assert plan.t_us.tolist() == [t_now + k * DT for k in range(65)]
    assert plan.xyz_rig.shape == (65, 3) and plan.yaw_rig.shape == (65,)
    np.testing.assert_array_equal(plan.xyz_rig[0], 0.0)
    assert plan.yaw_rig[0] == 0.0
    np.testing.assert_array_equal(plan.xyz_rig[:, 2], 0.0)  # yaw-only, on the ground plane
    assert np.all(np.isfinite(plan.xyz_rig)) and np.all(np.isfinite(plan.yaw_rig))
    assert len(plan.alternatives) == 1  # K = 2: sample 0 drives, one alternative
    axyz, ayaw = plan.alternatives[0]
    assert axyz.shape == (65, 3) and ayaw.shape == (65,) and np.all(axyz[0] == 0)
    assert not np.allclose(axyz, plan.xyz_rig)  # independent noise per sample
    assert set(plan.timing_ms) >= {"vision", "prefill", "decode", "expert", "total"}
    assert plan.coc is None and plan.decisions is None  # fast path: no CoC


def test_coc_path_gives_text_and_parsed_decisions(nano_model):
    pol = VLAPolicy(nano_model, num_samples=1, fast=False, max_new_tokens=3, threads=1)
    plan = feed(pol, 300_000)[-1]
    assert isinstance(plan.coc, str)
    assert set(plan.decisions) == {"longitudinal", "lateral", "lateral_direction"}


def _to_local(plan, hist, t_us):
    """Plan poses (rig frame at t_us) → local (x, y, yaw), using the arc history's pose at t_us."""
    i = int(np.searchsorted(hist.t_us, t_us))
    x0, y0 = hist.xyz_local[i, :2]
    yaw0 = 2 * math.atan2(hist.quat_local[i, 2], hist.quat_local[i, 3])
    c, s = math.cos(yaw0), math.sin(yaw0)
    x, y = plan.xyz_rig[:, 0], plan.xyz_rig[:, 1]
    return np.stack([x0 + c * x - s * y, y0 + s * x + c * y, yaw0 + plan.yaw_rig], -1)


def test_replan_every_holds_the_last_plan_reanchored_in_the_current_rig_frame(nano_model):
    pol = VLAPolicy(nano_model, num_samples=2, fast=True, threads=1, replan_every_s=0.5)
    hist_fn = lambda t: arc_history(t, yaw_rate=0.2)  # noqa: E731 - the ego turns while the plan is held
    plans = feed(pol, 1_600_000, history_fn=hist_fn)
    live = [p for p in plans if not p.warming_up]
    first_t = int(live[0].t_us[0])
    assert pol._inferences == 3  # at first_t, first_t + 0.5 s, first_t + 1.0 s: 3 inferences for 13 calls
    for k, p in enumerate(live):
        t_now = first_t + k * DT
        p.validate(t_now)
        source = live[k - k % 5]
        if k % 5 == 0:
            assert p.planned_at_us is None and len(p.t_us) == 65
            continue
        assert p.planned_at_us == t_now - (k % 5) * DT
        assert p.t_us.tolist() == [t_now + j * DT for j in range(65 - k % 5)]  # the remaining horizon
        np.testing.assert_array_equal(p.xyz_rig[0], 0.0)
        assert p.yaw_rig[0] == 0.0 and p.alternatives == () and p.coc == source.coc
        # the same poses in the local frame as the plan they come from, at the same absolute times
        held = _to_local(p, hist_fn(t_now), t_now)[1:]
        orig = _to_local(source, hist_fn(int(source.t_us[0])), int(source.t_us[0]))[k % 5 + 1:]
        np.testing.assert_allclose(held[:, :2], orig[:, :2], atol=1e-6)
        np.testing.assert_allclose(np.angle(np.exp(1j * (held[:, 2] - orig[:, 2]))), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="replan_every_s"):
        VLAPolicy(nano_model, replan_every_s=-0.1)


def test_deterministic_for_a_fixed_seed(policy):
    a = feed(policy, 500_000, seed=3)
    b = feed(policy, 500_000, seed=3)
    c = feed(policy, 500_000, seed=4)
    for pa, pb in zip(a[3:], b[3:]):
        np.testing.assert_array_equal(pa.xyz_rig, pb.xyz_rig)
        np.testing.assert_array_equal(pa.alternatives[0][0], pb.alternatives[0][0])
    assert not np.allclose(a[-1].xyz_rig, c[-1].xyz_rig)
    assert not np.allclose(a[-1].xyz_rig, a[-2].xyz_rig)  # a new draw every inference


def test_factory_pickles_and_loads_a_checkpoint(nano_model, tmp_path):
    from cordillera.model.tokenizer import load_tokenizer

    nano_model.save_pretrained(tmp_path / "ckpt", tokenizer=load_tokenizer(nano_model.cfg))
    fac = VLAPolicyFactory.from_spec(f"vla:{tmp_path / 'ckpt'}", fast=True, threads=1)
    pol = pickle.loads(pickle.dumps(fac))()
    assert pol.name == "vla" and pol.fast
    ref = VLAPolicy(nano_model, fast=True, threads=1)
    np.testing.assert_array_equal(feed(pol, 400_000)[-1].xyz_rig, feed(ref, 400_000)[-1].xyz_rig)
    with pytest.raises(ValueError, match="vla:"):
        VLAPolicyFactory.from_spec("expert")


# ---- closed loop ------------------------------------------------------------------------------
def test_closed_loop_smoke_random_nano(nano_model):
    from dataclasses import replace

    from cordillera.render import make_renderer
    from cordillera.render.rig import default_rig
    from cordillera.sim.runtime import SimConfig, run_rollout
    from cordillera.world import generator

    torch.set_num_threads(1)
    sc = replace(generator.make("road_following", 1000), duration_us=2_500_000, force_gt_duration_us=1_000_000)
    renderer = make_renderer(sc, default_rig(DEFAULT_CAMERAS, height=96, width=160), backend="cv")
    pol = VLAPolicy(nano_model, num_samples=1, fast=True, threads=1)
    ro = run_rollout(sc, pol, SimConfig(cameras=DEFAULT_CAMERAS), renderer, seed=5)
    assert ro.status == "ok", ro.error
    assert len(ro.steps) == 26
    after = [s for s in ro.steps if not s.force_gt]
    assert after and all(s.plan is not None and not s.plan.warming_up and len(s.plan.t_us) == 65 for s in after)
    assert [s.plan.warming_up for s in ro.steps[:4]] == [True, True, True, False]


def test_vision_cache_gives_the_uncached_plans_and_keeps_only_live_frames(nano_model):
    cached = VLAPolicy(nano_model, num_samples=1, fast=True, threads=1, cache_vision=True)
    plain = VLAPolicy(nano_model, num_samples=1, fast=True, threads=1, cache_vision=False)
    a, b = feed(cached, 1_000_000), feed(plain, 1_000_000)
    ran = [(pa, pb) for pa, pb in zip(a, b) if not pa.warming_up]
    assert len(ran) >= 3 and all(not pb.warming_up for _, pb in ran)
    for pa, pb in ran:
        np.testing.assert_allclose(pa.xyz_rig, pb.xyz_rig, rtol=1e-5, atol=1e-4)
    # steady state: 4 cameras × 4 frames stored, all of them from the last step's frames
    assert len(cached._vision_store) == 4 * len(DEFAULT_CAMERAS) and set(cached._vision_store) == set(cached._image_keys)
    assert plain._vision_store == {}


def test_select_consistent_orders_samples_by_their_own_coc_trajectory_agreement(nano_model):
    t = np.arange(1, 65) * 0.1
    cruise = np.stack([10.0 * t, 0 * t, 0 * t], -1)  # 10 m/s on
    a = -10.0 / 3.0  # rest after 3 s, 15 m ahead
    x_stop = np.where(t < 3.0, 10.0 * t + 0.5 * a * t**2, 15.0)
    stop = np.stack([x_stop, 0 * t, 0 * t], -1)
    xyz, yaw = np.stack([cruise, stop, cruise]), np.zeros((3, 64))
    th = np.arange(-15, 1) * 0.1
    sample = {"ego_history_xyz": torch.tensor(np.stack([10.0 * th, 0 * th, 0 * th], -1)),
              "ego_history_rot": torch.eye(3).repeat(16, 1, 1)}
    stop_text, keep_text = "Stop and keep lane because of the red light.", "Keep lane and resume speed since the road is clear."
    # sample 0 says stop but cruises; sample 1 says stop and stops; sample 2 says cruise and cruises
    assert VLAPolicy._order([stop_text, stop_text, keep_text], xyz, yaw, sample)[0] in (1, 2)
    assert VLAPolicy._order([stop_text, stop_text, stop_text], xyz, yaw, sample) == [1, 0, 2]
    same = np.stack([cruise, cruise, cruise])
    assert VLAPolicy._order([keep_text, keep_text, keep_text], same, yaw, sample) == [0, 1, 2]  # a tie keeps sample 0

    with pytest.raises(ValueError, match="num_samples >= 2"):
        VLAPolicy(nano_model, num_samples=1, select="consistent")
    with pytest.raises(ValueError, match="not fast"):
        VLAPolicy(nano_model, num_samples=2, fast=True, select="consistent")
    with pytest.raises(ValueError, match="select must be one of"):
        VLAPolicy(nano_model, select="best")
    # in the policy: the same samples as select="first" (same seed), the chosen one first, with its own CoC
    first = feed(VLAPolicy(nano_model, num_samples=3, max_new_tokens=4, threads=1), 300_000)[-1]
    chosen = feed(VLAPolicy(nano_model, num_samples=3, max_new_tokens=4, threads=1, select="consistent"), 300_000)[-1]
    trajs = lambda p: sorted(tuple(np.round(x[0][:, :2], 9).ravel()) for x in [(p.xyz_rig,), *p.alternatives])  # noqa: E731
    assert trajs(first) == trajs(chosen) and len(chosen.alternatives) == 2
    assert isinstance(chosen.coc, str) and "select" in chosen.timing_ms


def test_noise_temperature_zero_gives_one_trajectory_per_input(nano_model):
    """x0 = ε · 0 = 0 for every sample: the fast path's K samples (same prefix) coincide, and the
    session seed no longer matters; temperature 1 is the model default (independent samples)."""
    cold = VLAPolicy(nano_model, num_samples=2, fast=True, threads=1, noise_temperature=0.0)
    a, b = feed(cold, 500_000, seed=3)[-1], feed(cold, 500_000, seed=4)[-1]
    np.testing.assert_allclose(a.alternatives[0][0], a.xyz_rig, atol=1e-5)
    np.testing.assert_allclose(a.xyz_rig, b.xyz_rig, atol=1e-5)
    warm = feed(VLAPolicy(nano_model, num_samples=2, fast=True, threads=1, noise_temperature=1.0), 500_000, seed=3)[-1]
    default = feed(VLAPolicy(nano_model, num_samples=2, fast=True, threads=1), 500_000, seed=3)[-1]
    np.testing.assert_array_equal(warm.xyz_rig, default.xyz_rig)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="noise_temperature"):
            VLAPolicy(nano_model, noise_temperature=bad)


@pytest.mark.parametrize("kw", [{"temperature": -0.5}, {"temperature": float("nan")}, {"top_p": 0.0},
                                {"top_p": 1.5}])
def test_bad_coc_sampling_settings_are_refused(nano_model, kw):
    """A negative temperature used to fall through to greedy decoding silently."""
    with pytest.raises(ValueError, match=next(iter(kw))):
        VLAPolicy(nano_model, **kw)


def test_policy_inputs_are_the_training_sample_of_the_same_rollout(nano_model, tmp_path):
    """What the policy feeds the model in closed loop is what training fed it: the data pipeline's
    sample of the same expert rollout at the same t0 — frames of the same times, the same rig-frame
    history and navigation text, and the rollout's own pixels (the clip stores them video-compressed)."""
    from dataclasses import replace

    from cordillera.data.generate import expert_policy, rollout_to_clip
    from cordillera.data.reader import PaiReader
    from cordillera.data.samples import build_sample
    from cordillera.data.writer import create
    from cordillera.render import make_renderer
    from cordillera.render.rig import default_rig
    from cordillera.sim.runtime import SimConfig, run_rollout
    from cordillera.train.data import nav_text_at
    from cordillera.world import generator

    torch.set_num_threads(1)
    hw = (nano_model.cfg.inputs.image_height, nano_model.cfg.inputs.image_width)
    vla = VLAPolicy(nano_model, num_samples=1, fast=True, threads=1)
    t0s = (1_700_000, 1_800_000)
    seen = {}

    class ExpertWithShadow:
        """The expert drives; the VLA gets every observation from 0.3 s before each t0 (its frame window)."""

        name = "expert"

        def __init__(self):
            self.expert = expert_policy(None)

        def start(self, session):
            self.expert.start(session)
            vla.start(session)

        def observe_world(self, world_state, scenario):
            self.expert.observe_world(world_state, scenario)

        def plan(self, obs, t_now_us, t_query_us):
            if any(0 <= t - t_now_us <= 300_000 for t in t0s):
                if not vla.plan(obs, t_now_us, t_query_us).warming_up and t_now_us in t0s:
                    seen[t_now_us] = (vla.last_inputs, list(vla._image_keys))
            return self.expert.plan(obs, t_now_us, t_query_us)

        def close(self):
            self.expert.close()
            vla.close()

    sc = replace(generator.make("road_following", 1000), duration_us=8_200_000)
    rig = default_rig(DEFAULT_CAMERAS, height=hw[0], width=hw[1])
    ro = run_rollout(sc, ExpertWithShadow(), SimConfig(cameras=DEFAULT_CAMERAS, keep_images=True),
                     make_renderer(sc, rig, backend="cv"), seed=0)
    assert ro.status == "ok", ro.error
    assert sorted(seen) == list(t0s)
    w = create(tmp_path, DEFAULT_CAMERAS)
    w.add_clip(rollout_to_clip(sc, ro, rig, "clip0", [], []))
    w.finalize()
    reader = PaiReader(tmp_path)
    for t0, (inputs, keys) in seen.items():
        s = build_sample(reader, "clip0", t0, cameras=DEFAULT_CAMERAS, image_hw=hw)
        assert [k[1] for k in keys] == s["absolute_timestamps"].reshape(-1).tolist()  # same frames, same order
        np.testing.assert_allclose(inputs["ego_history_xyz"].numpy(), s["ego_history_xyz"], atol=1e-5)
        np.testing.assert_allclose(inputs["ego_history_rot"].numpy(), s["ego_history_rot"], atol=1e-5)
        assert inputs["nav_text"] == nav_text_at(reader, "clip0", t0) == "Continue straight"
        # the pixels are the rollout's own frames at those times (the clip stores them video-compressed)
        frames_at = {(c, st.t_us): st.frames[c].image for st in ro.steps for c in DEFAULT_CAMERAS}
        want = np.stack([frames_at[k] for k in keys]).transpose(0, 3, 1, 2)
        np.testing.assert_array_equal(inputs["image_frames"].numpy().reshape(want.shape), want)


def test_select_medoid_drives_the_trajectory_nearest_the_other_samples(nano_model):
    t = np.arange(1, 65) * 0.1

    def straight(*speeds):
        return np.stack([np.stack([v * t, 0 * t], -1) for v in speeds])

    # straight lines: the mean distance between two samples is |Δv| · mean(t), so each sample's sum is
    # the sum of its |Δv|: 14 → 4+3+8+5, 10 → 4+1+4+1 = 10 (least), 11 → 11, 6 → 17, 9 → 11
    assert medoid_order(straight(14.0, 10.0, 11.0, 6.0, 9.0)) == [1, 0, 2, 3, 4]
    # an even count on a line: both middle samples sum to 9 (14: 15, 6: 17) — the tie keeps the lower index
    assert medoid_order(straight(14.0, 11.0, 10.0, 6.0))[0] == 1
    # the same speeds, but sample 1 drifts 3 m sideways: sample 2 is the typical one now
    drift = straight(14.0, 10.0, 10.0, 6.0)
    drift[1, :, 1] = 3.0
    assert medoid_order(drift)[0] == 2

    with pytest.raises(ValueError, match="medoid.*num_samples >= 2"):
        VLAPolicy(nano_model, num_samples=1, select="medoid")
    # in the policy (fast path, no CoC needed): the same K samples as select="first", the medoid first
    first = feed(VLAPolicy(nano_model, num_samples=3, fast=True, threads=1), 300_000)[-1]
    med = feed(VLAPolicy(nano_model, num_samples=3, fast=True, threads=1, select="medoid"), 300_000)[-1]
    samples = [first.xyz_rig, *(a[0] for a in first.alternatives)]
    k = medoid_order(np.stack(samples)[:, 1:, :2])[0]
    np.testing.assert_array_equal(med.xyz_rig, samples[k])
    assert len(med.alternatives) == 2 and med.coc is None


# ---- privileged reasoning ------------------------------------------------------------------------
def test_privileged_reasoning_forces_the_labelers_coc_for_the_state_driven_into(nano_model):
    """With reasoning="privileged" each inference's CoC is the auto-labeler's text for the world state
    of that step: the text decoded from the tokens the model emitted equals what an independent
    labeler replaying the rollout's committed states writes, whatever a random model would write."""
    from dataclasses import replace

    from cordillera.reasoning.labeler import PrivilegedReasoner
    from cordillera.render import make_renderer
    from cordillera.render.rig import default_rig
    from cordillera.sim.runtime import SimConfig, run_rollout
    from cordillera.world import generator
    from cordillera.world.scenario import WorldState

    torch.set_num_threads(1)
    sc = replace(generator.make("stop_sign", 3), duration_us=2_500_000, force_gt_duration_us=1_000_000)
    renderer = make_renderer(sc, default_rig(DEFAULT_CAMERAS, height=96, width=160), backend="cv")
    pol = VLAPolicy(nano_model, num_samples=2, threads=1, reasoning="privileged", seed=3)
    ro = run_rollout(sc, pol, SimConfig(cameras=DEFAULT_CAMERAS), renderer, seed=5)
    assert ro.status == "ok", ro.error
    replay = PrivilegedReasoner(seed=3)
    replay.start(SessionInfo("replay", sc.id, 5, DEFAULT_CAMERAS))
    checked = 0
    for st in ro.steps:
        replay.observe_world(WorldState(st.t_us, st.ego, st.actors, st.signals), sc)
        want = replay.step(None, st.t_us, st.t_us + DT)[1]
        if st.plan is not None and not st.plan.warming_up:
            assert want is not None and st.plan.coc == want, (st.t_us, st.plan.coc, want)
            assert st.plan.decisions["longitudinal"] is not None
            checked += 1
    assert checked >= 10 and pol.own_coc_steps == 0


def test_on_path_keeps_the_distances_and_takes_the_paths_position_and_heading():
    from cordillera.model.policy import on_path

    r = 20.0  # the path: a left quarter circle of radius 20 m from the origin, heading +x
    th = np.linspace(0.0, np.pi / 2, 200)
    path = np.stack([r * np.sin(th), r * (1 - np.cos(th))], -1)
    d = np.cumsum(np.full(10, 2.0))  # the plan: 2 m per step straight ahead, 20 m in all
    xy, yaw = on_path(np.stack([d, 0 * d], -1), path, th)
    # on the circle at arc length d: angle d / r
    np.testing.assert_allclose(xy, np.stack([r * np.sin(d / r), r * (1 - np.cos(d / r))], -1), atol=2e-3)
    np.testing.assert_allclose(yaw, d / r, atol=1e-3)
    # past the path's end (arc 31.4 m) it goes straight on along the last heading
    xy, yaw = on_path(np.array([[40.0, 0.0]]), path, th)
    np.testing.assert_allclose(xy[0], [r + 0.0, r + (40.0 - r * np.pi / 2)], atol=2e-3)
    assert yaw[0] == pytest.approx(np.pi / 2)
    # a path that stands still (the expert stopped) still gives poses: straight along its heading
    xy, _ = on_path(np.array([[1.0, 0.0], [2.0, 0.0]]), np.zeros((65, 2)), np.zeros(65))
    np.testing.assert_allclose(xy, [[1.0, 0.0], [2.0, 0.0]], atol=1e-6)


def test_privileged_steering_drives_the_models_speeds_along_the_experts_path(nano_model):
    """steering="privileged": the driven plan is the same model's unsteered plan (same seeds) laid onto
    the path the expert planned at that step — its speeds, the expert's path."""
    from dataclasses import replace

    from cordillera.model.policy import on_path
    from cordillera.render import make_renderer
    from cordillera.render.rig import default_rig
    from cordillera.sim.runtime import SimConfig, run_rollout
    from cordillera.world import generator

    torch.set_num_threads(1)
    sc = replace(generator.make("road_following", 1000), duration_us=2_500_000, force_gt_duration_us=1_000_000)
    renderer = make_renderer(sc, default_rig(DEFAULT_CAMERAS, height=96, width=160), backend="cv")
    pol = VLAPolicy(nano_model, num_samples=1, fast=True, threads=1, steering="privileged")
    shadow = VLAPolicy(nano_model, num_samples=1, fast=True, threads=1)  # the same model unsteered
    expert_plans = {}
    step = pol._reasoner.step

    def recording_step(obs, t, tq):
        out = step(obs, t, tq)
        expert_plans[t] = out[0]
        return out

    pol._reasoner.step = recording_step
    checked = []

    class Both:
        name = "vla"

        def start(self, session):
            pol.start(session)
            shadow.start(session)

        def observe_world(self, ws, scenario):
            pol.observe_world(ws, scenario)

        def plan(self, obs, t, tq):
            p, q = pol.plan(obs, t, tq), shadow.plan(obs, t, tq)
            if not p.warming_up:
                e = expert_plans[t]
                want_xy, want_yaw = on_path(q.xyz_rig[1:, :2], e.xyz_rig[:, :2], e.yaw_rig)
                np.testing.assert_allclose(p.xyz_rig[1:, :2], want_xy, atol=1e-9)
                np.testing.assert_allclose(p.yaw_rig[1:], want_yaw, atol=1e-9)
                checked.append(t)
            return p

        def close(self):
            pol.close()
            shadow.close()

    ro = run_rollout(sc, Both(), SimConfig(cameras=DEFAULT_CAMERAS), renderer, seed=5)
    assert ro.status == "ok", ro.error
    assert len(checked) >= 10


def test_privileged_reasoning_needs_the_coc_decoder(nano_model):
    with pytest.raises(ValueError, match="privileged"):
        VLAPolicy(nano_model, fast=True, reasoning="privileged")
    with pytest.raises(ValueError, match="reasoning must be one of"):
        VLAPolicy(nano_model, reasoning="label")
    with pytest.raises(ValueError, match="steering must be one of"):
        VLAPolicy(nano_model, steering="expert")
    pol = VLAPolicy(nano_model, num_samples=1, threads=1)  # own reasoning ignores privileged state
    pol.observe_world(object(), object())
