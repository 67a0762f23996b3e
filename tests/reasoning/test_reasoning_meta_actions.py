"""Meta-action classifier and keyframes on synthetic egomotion with hand-derived expectations."""

import numpy as np
import pytest

from cordillera.reasoning.keyframes import MIN_FUTURE_US, dense_t0s, select_keyframes
from cordillera.reasoning.meta_actions import classify, classify_trajectory_rig, labels_at
from cordillera.world.scenario import Hazard

DT = 0.1


def integrate(v, kappa):
    """Unicycle track from speed (m/s) and curvature (1/m) per tick."""
    n = len(v)
    x, y, th = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(1, n):
        th[i] = th[i - 1] + kappa[i - 1] * v[i - 1] * DT
        x[i] = x[i - 1] + v[i - 1] * np.cos(th[i - 1]) * DT
        y[i] = y[i - 1] + v[i - 1] * np.sin(th[i - 1]) * DT
    return np.stack([x, y], 1), th


def spans(sp, group):
    return [(s.label, s.start, s.end) for s in sp[group]]


def test_stop():
    # 10 m/s for 3 s, brake at 1.0 m/s² for 10 s (gentle: |a| < 1.4), then stand for 4 s
    t = np.arange(170) * DT
    v = np.where(t < 3, 10.0, np.maximum(10.0 - 1.0 * (t - 3), 0.0))
    xy, th = integrate(v, np.zeros_like(v))
    sp = classify(xy, th)
    labels = [s.label for s in sp["longitudinal"]]
    assert labels == ["maintain_speed", "gentle_deceleration", "stop"]
    dec = sp["longitudinal"][1]
    stop = sp["longitudinal"][2]
    assert abs(dec.start - 30) <= 3  # braking starts at 3.0 s
    assert abs(stop.start - 130) <= 4  # standstill from 13.0 s (speed < 0.3 m/s from 12.7 s)
    assert stop.end == 170
    assert spans(sp, "lane") == [("keep_lane", 0, 170)]
    assert spans(sp, "lateral") == [("go_straight", 0, 170)]
    # hard braking (2 m/s² >= 1.4) is strong
    v2 = np.where(t < 3, 10.0, np.maximum(10.0 - 2.0 * (t - 3), 0.0))
    sp2 = classify(*integrate(v2, np.zeros_like(v2)))
    assert [s.label for s in sp2["longitudinal"]] == ["maintain_speed", "strong_deceleration", "stop"]


def test_gentle_acceleration():
    # 5 m/s, then +1.0 m/s² from 3 s to 8 s (Δv = 5 ≥ 0.8, 0.15 ≤ a < 1.4), then 10 m/s
    t = np.arange(120) * DT
    v = np.clip(5.0 + 1.0 * (t - 3.0), 5.0, 10.0)
    sp = classify(*integrate(v, np.zeros_like(v)))
    assert [s.label for s in sp["longitudinal"]] == ["maintain_speed", "gentle_acceleration", "maintain_speed"]
    acc = sp["longitudinal"][1]
    assert abs(acc.start - 30) <= 3 and abs(acc.end - 80) <= 5


def test_lane_change_left():
    # 12 m/s straight; quintic lateral shift of +3.5 m over 4 s starting at 3 s
    t = np.arange(150) * DT
    u = np.clip((t - 3.0) / 4.0, 0.0, 1.0)
    xy = np.stack([12.0 * t, 3.5 * (10 * u**3 - 15 * u**4 + 6 * u**5)], 1)
    sp = classify(xy)
    lane = spans(sp, "lane")
    assert [lab for lab, _, _ in lane] == ["keep_lane", "left_lane_change", "keep_lane"]
    _, s, e = lane[1]
    assert 30 <= s <= 38  # the shift becomes measurable (5 cm) at ~3.5 s
    assert 55 <= e <= 70  # 90 % of the shift is reached at ~6.2 s
    assert [s.label for s in sp["longitudinal"]] == ["maintain_speed"]
    # mirrored: right
    sp_r = classify(xy * np.array([1.0, -1.0]))
    assert [lab for lab, _, _ in spans(sp_r, "lane")] == ["keep_lane", "right_lane_change", "keep_lane"]


def test_left_turn():
    # 8 m/s; 90° left arc of radius 12 m from 3 s (κ = 0.083 ≥ 0.05 sharp, Δθ = 1.57 ≥ 0.2)
    n = 150
    t = np.arange(n) * DT
    dur = np.pi / 2 * 12.0 / 8.0
    k = np.where((t >= 3.0) & (t < 3.0 + dur), 1 / 12.0, 0.0)
    xy, th = integrate(np.full(n, 8.0), k)
    sp = classify(xy, th)
    assert [s.label for s in sp["lateral"]] == ["go_straight", "sharp_steer_left", "go_straight"]
    lane = spans(sp, "lane")
    assert [lab for lab, _, _ in lane] == ["keep_lane", "turn_left", "keep_lane"]
    assert abs(lane[1][1] - 30) <= 3 and abs(lane[1][2] - 54) <= 3
    # without yaw (derived from positions) the answer is the same
    assert [lab for lab, _, _ in spans(classify(xy), "lane")] == ["keep_lane", "turn_left", "keep_lane"]


def test_gentle_curve_is_not_a_turn_or_lane_change():
    # 20 m/s on a 300 m radius curve: κ = 0.0033 (steer), far below turn curvature
    n = 150
    t = np.arange(n) * DT
    xy, th = integrate(np.full(n, 20.0), np.where(t > 4.0, 1 / 300.0, 0.0))
    sp = classify(xy, th)
    assert [s.label for s in sp["lane"]] == ["keep_lane", "follow_curve_left"]
    assert [s.label for s in sp["lateral"]] == ["go_straight", "steer_left"]


def test_predicted_trajectory_in_rig_frame_and_released_line_format():
    t = np.arange(1, 65) * DT
    fut = np.stack([10.0 * t, np.zeros_like(t)], 1)
    hist = np.stack([10.0 * (np.arange(-15, 1) * DT), np.zeros(16)], 1)
    sp = classify_trajectory_rig(fut, history_xyz_rig=hist)
    assert labels_at(sp, 20) == {"longitudinal": "maintain_speed", "lateral": "go_straight", "lane": "keep_lane"}
    assert sp["longitudinal"][0].to_line() == "MaintainSpeed - Agent:ego, Start:0, End:79"


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        classify(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        classify(np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="10 Hz"):
        classify(np.zeros((10, 2)), dt_s=0.2)


def test_keyframes_meta_action_onsets_and_hazards_with_window_filter():
    # 20 s clip: cruise, brake at 5 s to a stop, stand; hazards at 4.5 s (merged), 0.5 s and 15 s (filtered)
    t = np.arange(201) * DT
    v = np.where(t < 5, 10.0, np.maximum(10.0 - 1.0 * (t - 5), 0.0))
    xy, th = integrate(v, np.zeros_like(v))
    t_us = np.arange(201, dtype=np.int64) * 100_000
    kfs = select_keyframes(t_us, xy, th, [Hazard(4_500_000, "red_light", "light_W"), Hazard(500_000, "early"),
                                         Hazard(15_000_000, "late")])
    assert [(k.t_us, k.kind, k.source) for k in kfs][0] == (4_500_000, "hazard", "red_light")
    # the braking onset at ~5 s is within 1 s of the hazard and collapses into it
    assert all(abs(k.t_us - 5_000_000) >= 1_000_000 or k.kind == "hazard" for k in kfs)
    assert all(1_600_000 <= k.t_us <= 20_000_000 - MIN_FUTURE_US for k in kfs)
    stop_kf = [k for k in kfs if k.source == "stop"]
    assert not stop_kf  # the standstill starts at ~14.9 s: less than 6.4 s of future remains
    # without the hazard the braking onset itself is a keyframe
    kfs2 = select_keyframes(t_us, xy, th)
    assert any(k.kind == "meta_action" and k.source == "gentle_deceleration" and abs(k.t_us - 5_000_000) <= 300_000
               for k in kfs2)


def test_dense_t0s_grid():
    # 20 s clip, every 1 s from 1.6 s, after a 1.7 s force-GT warm-up, t0 + 6.4 s <= 20 s
    assert dense_t0s(20_000_000, 1_600_000, 1_000_000, 1_700_000) == list(range(1_700_000, 13_600_001, 1_000_000))
    assert dense_t0s(20_000_000, 1_600_000, 1_000_000)[0] == 1_600_000
    assert dense_t0s(20_000_000, 1_650_000, 500_000)[:2] == [1_700_000, 2_200_000]  # onto the 100 ms grid
    assert dense_t0s(7_000_000, 1_600_000, 1_000_000) == []
    with pytest.raises(ValueError, match="every_us"):
        dense_t0s(20_000_000, 1_600_000, 0)
