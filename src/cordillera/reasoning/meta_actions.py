"""Rule-based meta-actions from egomotion (spec/alpamayo_training_data.md §6.1 item 1, §6.2).

Input: a 10 Hz ego track (x, y, yaw in any inertial frame — local for ground truth, the t0 rig
frame for a predicted trajectory). Output: spans ``MetaActionSpan(group, label, start, end)`` in
three groups, with the canonical snake_case labels of the released autolabeler:

- longitudinal (7): gentle/strong acceleration/deceleration, maintain_speed, stop, reverse;
- lateral (7): steer / sharp_steer left/right, reverse_left/right, go_straight;
- lane (9): keep_lane, left/right_lane_change, slightly_shift_left/right, turn_left/right,
  follow_curve_left/right.

Samples are classified every 2 ticks (0.2 s) and both ticks take the class. Raw classes use the
segmentation thresholds, runs shorter than the minimum length are absorbed by their longer
neighbour, then each run is classified by the released thresholds in their order.

The lane group needs a lane map in the original; we have only egomotion, so the lateral offset
"from the lane" is measured against a reference heading that is a running **median** of the
heading over ±4 s (edge-padded): a median removes a short heading bump (a lane change or a nudge)
but keeps steps and ramps (turns, curves), so curves do not look like lane shifts. Turns and
curves are told apart by curvature (an intersection turn has radius ≲ 40 m).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TICK_US = 100_000  # [µs] 10 Hz egomotion, spec/alpamayo_training_data.md §6.1
CLASSIFY_EVERY_TICKS = 2  # spec §6.1: classified every 2 ticks (0.2 s)

LONGITUDINAL_LABELS = ("gentle_acceleration", "strong_acceleration", "gentle_deceleration", "strong_deceleration",
                       "maintain_speed", "stop", "reverse")
LATERAL_LABELS = ("reverse_right", "reverse_left", "steer_right", "steer_left", "sharp_steer_right",
                  "sharp_steer_left", "go_straight")
LANE_LABELS = ("keep_lane", "left_lane_change", "right_lane_change", "slightly_shift_left", "slightly_shift_right",
               "turn_left", "turn_right", "follow_curve_left", "follow_curve_right")
GROUPS = ("longitudinal", "lateral", "lane")

# -- longitudinal thresholds, spec §6.2 (processor/longitudinal/classification.py) ----------------
REVERSE_SPEED_MPS = -0.12  # mean speed along heading <= this -> reverse
STOP_SPEED_MPS = 0.12  # mean speed <= this -> stop
STRONG_ACCEL_MPS2 = 1.4  # mean accel >= this (and dv >= 0.8) -> strong acceleration
GENTLE_ACCEL_MPS2 = 0.15  # 0.15 <= mean accel < 1.4 (and dv >= 0.8) -> gentle acceleration
MIN_DV_MPS = 0.8
SEG_SPEED_MPS = 0.3  # segmentation: |v| < 0.3 is "stopped-like"
SEG_ACCEL_MPS2 = 0.1  # segmentation: |a| >= 0.1 is accelerating / decelerating
SEG_STRONG_ACCEL_MPS2 = 1.25  # segmentation: |a| >= 1.25 is strong
MIN_LON_TICKS = 8
MIN_MAINTAIN_TICKS = 12

# -- lateral thresholds, spec §6.2 (processor/lateral/classification.py) -------------------------
SHARP_TURN_RATE_1PM = 0.05  # [rad/m]
SHARP_HEADING_RAD = 0.2
STEER_TURN_RATE_1PM = 0.0015
STEER_HEADING_RAD = 0.015
REVERSE_LAT_SPEED_MPS = -0.1
REVERSE_TURN_RATE_1PM = 0.002
REVERSE_HEADING_RAD = 0.2
MIN_LAT_TICKS = 10

# -- lane thresholds: spec §6.2 where given, ours where the original reads a map ------------------
LANE_LOOKAHEAD_TICKS = 20  # spec §6.2
LANE_CHANGE_MIN_RUN_TICKS = 4  # spec §6.2
LANE_SHIFT_NET_M = 0.5  # spec §6.2: net lateral >= 0.5 m over the lookahead makes a shift candidate
LANE_CHANGE_NET_M = 2.0  # ours: net shift >= ~0.55 lane widths is a lane change (no lane map)
SLIGHT_SHIFT_MIN_M = 0.3  # ours: smaller excursions are noise
TURN_MIN_HEADING_RAD = 0.5  # ours: ~30 deg of heading change ...
TURN_MIN_CURVATURE_1PM = 0.025  # ours: ... at radius <= 40 m is an intersection turn
CURVE_MIN_HEADING_RAD = 0.1  # ours: a sustained heading change of >= ~6 deg is a curve
MIN_LANE_TICKS = 10
SHIFT_ONSET_M = 0.05  # ours: a lateral shift starts where the offset has moved 5 cm
MEDIAN_HALF_WINDOW_TICKS = 40  # ours: ±4 s reference-heading median


@dataclass(frozen=True)
class MetaActionSpan:
    group: str  # GROUPS
    label: str
    start: int  # tick index (inclusive)
    end: int  # tick index (exclusive)

    @property
    def duration_ticks(self) -> int:
        return self.end - self.start

    def to_line(self, agent: str = "ego") -> str:
        """The released txt format: ``<Action> - Agent:<ego>, Start:<frame>, End:<frame>``."""
        camel = "".join(w.capitalize() for w in self.label.split("_"))
        return f"{camel} - Agent:{agent}, Start:{self.start}, End:{self.end - 1}"


@dataclass(frozen=True)
class Egomotion:
    """Derived 10 Hz signals of an ego track."""

    speed_mps: np.ndarray  # signed speed along the heading
    accel_mps2: np.ndarray
    yaw_rad: np.ndarray  # unwrapped
    curvature_1pm: np.ndarray  # dyaw/ds (rad/m); 0 where the ego barely moves
    arc_m: np.ndarray  # cumulative distance travelled
    lateral_offset_m: np.ndarray  # left +, against the median reference heading, 0 at index 0


def _check_track(xy: np.ndarray, yaw: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] < 2 or len(xy) < 3:
        raise ValueError(f"egomotion must be (T>=3, 2+) positions, got shape {xy.shape}")
    xy = xy[:, :2]
    if yaw is None:
        d = np.diff(xy, axis=0)
        h = np.arctan2(d[:, 1], d[:, 0])
        moving = np.linalg.norm(d, axis=1) > 1e-3
        if not moving.any():
            h = np.zeros(len(d))
        else:  # hold the last moving heading through stationary ticks
            idx = np.where(moving, np.arange(len(d)), -1)
            idx = np.maximum.accumulate(idx)
            first = int(np.argmax(moving))
            idx[idx < 0] = first
            h = h[idx]
        yaw = np.concatenate([h[:1], h])
    yaw = np.unwrap(np.asarray(yaw, dtype=np.float64).reshape(-1))
    if len(yaw) != len(xy):
        raise ValueError(f"yaw has {len(yaw)} samples, positions {len(xy)}")
    if not (np.all(np.isfinite(xy)) and np.all(np.isfinite(yaw))):
        raise ValueError("egomotion contains NaN or inf")
    return xy, yaw


def _smooth(x: np.ndarray, half: int) -> np.ndarray:
    if half <= 0 or len(x) < 3:
        return x.copy()
    k = np.ones(2 * half + 1) / (2 * half + 1)
    xp = np.pad(x, half, mode="edge")
    return np.convolve(xp, k, mode="valid")


def running_median(x: np.ndarray, half: int) -> np.ndarray:
    xp = np.pad(np.asarray(x, dtype=np.float64), half, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(xp, 2 * half + 1)
    return np.median(win, axis=1)


def egomotion(xy, yaw=None, dt_s: float = 0.1, pad_before: int = 0) -> Egomotion:
    """Speeds, accelerations, curvature and median-referenced lateral offset of a 10 Hz track.

    ``pad_before``: index of the sample where the lateral offset is 0 (e.g. t0 in history+future)."""
    xy, yaw = _check_track(xy, yaw)
    d = np.diff(xy, axis=0)
    step = np.linalg.norm(d, axis=1)
    along = d[:, 0] * np.cos(yaw[:-1]) + d[:, 1] * np.sin(yaw[:-1])
    sign = np.where(along < -1e-6, -1.0, 1.0)
    v_mid = sign * step / dt_s  # speeds at half ticks
    v = np.empty(len(xy))
    v[1:-1] = 0.5 * (v_mid[:-1] + v_mid[1:])
    v[0], v[-1] = v_mid[0], v_mid[-1]
    v_s = _smooth(v, 2)
    a = np.gradient(v_s, dt_s)
    a = _smooth(a, 2)
    arc = np.concatenate([[0.0], np.cumsum(step)])
    dyaw = np.gradient(yaw)
    ds = np.gradient(arc)
    kappa = np.where(ds > 0.05, dyaw / np.maximum(ds, 1e-9), 0.0)
    ref = running_median(yaw, MEDIAN_HALF_WINDOW_TICKS)
    rel = np.sin(yaw - ref)
    dlat = np.concatenate([[0.0], 0.5 * (rel[:-1] + rel[1:]) * step])
    lat = np.cumsum(dlat)
    lat = lat - lat[min(max(pad_before, 0), len(lat) - 1)]
    return Egomotion(v, a, yaw, kappa, arc, lat)


# ----------------------------------------------------------------------------------------------
# Segmentation helpers
# ----------------------------------------------------------------------------------------------
def _runs(labels: list) -> list[list]:
    """[[label, start, end), ...] run-length encoding."""
    out = []
    for i, lab in enumerate(labels):
        if out and out[-1][0] == lab:
            out[-1][2] = i + 1
        else:
            out.append([lab, i, i + 1])
    return out


def _absorb_short(runs: list[list], min_len) -> list[list]:
    """Merge runs shorter than ``min_len(label)`` into their longer neighbour, shortest first."""
    runs = [list(r) for r in runs]
    while len(runs) > 1:
        short = [(r[2] - r[1], i) for i, r in enumerate(runs) if r[2] - r[1] < min_len(r[0])]
        if not short:
            break
        _, i = min(short)
        left = runs[i - 1] if i > 0 else None
        right = runs[i + 1] if i + 1 < len(runs) else None
        if left is None or (right is not None and right[2] - right[1] > left[2] - left[1]):
            right[1] = runs[i][1]
        else:
            left[2] = runs[i][2]
        del runs[i]
        merged = []
        for r in runs:  # neighbours may now share a label
            if merged and merged[-1][0] == r[0]:
                merged[-1][2] = r[2]
            else:
                merged.append(r)
        runs = merged
    return runs


def _sampled(raw_fn, n: int) -> list:
    """Classify every CLASSIFY_EVERY_TICKS ticks and hold the class for the skipped tick."""
    out = []
    for i in range(n):
        j = i - (i % CLASSIFY_EVERY_TICKS)
        out.append(raw_fn(j) if j == i else out[-1])
    return out


# ----------------------------------------------------------------------------------------------
# Groups
# ----------------------------------------------------------------------------------------------
def _longitudinal(em: Egomotion) -> list[MetaActionSpan]:
    v, a = em.speed_mps, em.accel_mps2

    def raw(i):
        if v[i] <= -SEG_SPEED_MPS:
            return "rev"
        if abs(v[i]) < SEG_SPEED_MPS:
            return "stop"
        if a[i] >= SEG_ACCEL_MPS2:
            return "acc"
        if a[i] <= -SEG_ACCEL_MPS2:
            return "dec"
        return "keep"

    runs = _absorb_short(_runs(_sampled(raw, len(v))), lambda lab: MIN_MAINTAIN_TICKS if lab == "keep" else MIN_LON_TICKS)
    out = []
    for _, s, e in runs:
        vm, am = float(np.mean(v[s:e])), float(np.mean(a[s:e]))
        dv = float(v[e - 1] - v[s]) if e - s > 1 else 0.0
        if vm <= REVERSE_SPEED_MPS:
            lab = "reverse"
        elif vm <= STOP_SPEED_MPS:
            lab = "stop"
        elif am >= STRONG_ACCEL_MPS2 and dv >= MIN_DV_MPS:
            lab = "strong_acceleration"
        elif GENTLE_ACCEL_MPS2 <= am and dv >= MIN_DV_MPS:
            lab = "gentle_acceleration"
        elif am <= -STRONG_ACCEL_MPS2 and dv <= -MIN_DV_MPS:
            lab = "strong_deceleration"
        elif am <= -GENTLE_ACCEL_MPS2 and dv <= -MIN_DV_MPS:
            lab = "gentle_deceleration"
        else:
            lab = "maintain_speed"
        out.append(MetaActionSpan("longitudinal", lab, s, e))
    return _merge_same(out)


def _lateral(em: Egomotion) -> list[MetaActionSpan]:
    k, v, yaw = em.curvature_1pm, em.speed_mps, em.yaw_rad

    def raw(i):
        side = "left" if k[i] > 0 else "right"
        if v[i] <= REVERSE_LAT_SPEED_MPS and abs(k[i]) >= REVERSE_TURN_RATE_1PM:
            return "reverse_" + side
        if abs(k[i]) >= SHARP_TURN_RATE_1PM:
            return "sharp_" + side
        if abs(k[i]) >= STEER_TURN_RATE_1PM:
            return "steer_" + side
        return "straight"

    runs = _absorb_short(_runs(_sampled(raw, len(k))), lambda lab: MIN_LAT_TICKS)
    out = []
    for lab, s, e in runs:
        km = float(np.mean(k[s:e]))
        dh = float(yaw[e - 1] - yaw[s])
        side = "left" if dh > 0 else "right"
        if lab == "straight":  # the thresholds qualify steering candidates; straight runs stay straight
            name = "go_straight"
        elif lab.startswith("reverse") and abs(km) >= REVERSE_TURN_RATE_1PM and abs(dh) >= REVERSE_HEADING_RAD:
            name = "reverse_" + side
        elif abs(km) >= SHARP_TURN_RATE_1PM and abs(dh) >= SHARP_HEADING_RAD:
            name = "sharp_steer_" + side
        elif abs(km) >= STEER_TURN_RATE_1PM and abs(dh) >= STEER_HEADING_RAD:
            name = "steer_" + side
        else:
            name = "go_straight"
        out.append(MetaActionSpan("lateral", name, s, e))
    return _merge_same(out)


def _lane(em: Egomotion, lateral_spans: list[MetaActionSpan]) -> list[MetaActionSpan]:
    n = len(em.speed_mps)
    labels = ["keep_lane"] * n
    # 1. lateral shifts against the median reference heading
    lat = em.lateral_offset_m
    la = LANE_LOOKAHEAD_TICKS
    cand = np.zeros(n, dtype=int)
    for i in range(0, n, CLASSIFY_EVERY_TICKS):
        j = min(i + la, n - 1)
        if j <= i:
            continue
        d = lat[j] - lat[i]
        if abs(d) >= LANE_SHIFT_NET_M and (em.arc_m[j] - em.arc_m[i]) > 1.0:
            cand[i:i + CLASSIFY_EVERY_TICKS] = 1 if d > 0 else -1
    for sgn, s, e in _runs(list(cand)):
        if sgn == 0 or e - s < LANE_CHANGE_MIN_RUN_TICKS:
            continue
        stop = min(e + la, n - 1)
        seg = lat[s:stop + 1] - lat[s]
        net = float(seg[-1])
        peak = float(seg.max() if sgn > 0 else -seg.min())
        side = "left" if sgn > 0 else "right"
        # the lookahead flags a shift up to 2 s early: the onset is where the offset starts to move
        moved = np.nonzero(sgn * seg >= SHIFT_ONSET_M)[0]
        if len(moved):
            s0 = s
            s = s0 + max(int(moved[0]) - 1, 0)
            seg = seg[s - s0:] - seg[s - s0]
        if sgn * net >= LANE_CHANGE_NET_M:
            name = f"{side}_lane_change"
            # the change ends where the offset reaches 90 % of its net value
            reach = np.nonzero(sgn * seg >= 0.9 * abs(net))[0]
            stop = s + int(reach[0]) + 1 if len(reach) else stop
        elif peak >= SLIGHT_SHIFT_MIN_M:
            name = f"slightly_shift_{side}"
            stop = min(e, n)
        else:
            continue
        for t in range(s, min(stop, n)):
            labels[t] = name
    # 2. turns and curves from the steering spans (they win over shifts: the median lags a turn)
    for sp in lateral_spans:
        if sp.label == "go_straight" or sp.label.startswith("reverse"):
            continue
        s, e = sp.start, sp.end
        dh = float(em.yaw_rad[e - 1] - em.yaw_rad[s])
        km = float(np.mean(np.abs(em.curvature_1pm[s:e])))
        side = "left" if dh > 0 else "right"
        if abs(dh) >= TURN_MIN_HEADING_RAD and km >= TURN_MIN_CURVATURE_1PM:
            name = f"turn_{side}"
        elif abs(dh) >= CURVE_MIN_HEADING_RAD and not any("lane_change" in labels[t] for t in range(s, e)):
            name = f"follow_curve_{side}"
        else:
            continue
        for t in range(s, e):
            labels[t] = name
    runs = _absorb_short(_runs(labels), lambda lab: LANE_CHANGE_MIN_RUN_TICKS if "lane_change" in lab else MIN_LANE_TICKS)
    return _merge_same([MetaActionSpan("lane", lab, s, e) for lab, s, e in runs])


def _merge_same(spans: list[MetaActionSpan]) -> list[MetaActionSpan]:
    out: list[MetaActionSpan] = []
    for sp in spans:
        if out and out[-1].label == sp.label:
            out[-1] = MetaActionSpan(sp.group, sp.label, out[-1].start, sp.end)
        else:
            out.append(sp)
    return out


def classify(xy, yaw=None, dt_s: float = 0.1) -> dict[str, list[MetaActionSpan]]:
    """Meta-action spans of a 10 Hz ego track, per group: {"longitudinal": [...], "lateral": [...],
    "lane": [...]}. Spans tile the track (start of the first = 0, end of the last = T)."""
    if abs(dt_s - 0.1) > 1e-9:
        raise ValueError(f"meta-actions are defined on 10 Hz egomotion (dt 0.1 s), got dt {dt_s}")
    em = egomotion(xy, yaw, dt_s)
    lat = _lateral(em)
    return {"longitudinal": _longitudinal(em), "lateral": lat, "lane": _lane(em, lat)}


def labels_at(spans: dict[str, list[MetaActionSpan]], tick: int) -> dict[str, str]:
    """The label of each group covering ``tick``."""
    out = {}
    for g, sps in spans.items():
        for sp in sps:
            if sp.start <= tick < sp.end:
                out[g] = sp.label
                break
    return out


def classify_trajectory_rig(xyz_rig, yaw_rig=None, history_xyz_rig=None, history_yaw_rig=None) -> dict[str, list[MetaActionSpan]]:
    """Meta-actions of a predicted trajectory (rig frame at t0, 10 Hz), optionally preceded by the
    history. Tick indices count from the first history pose (or the first future pose)."""
    fut = np.asarray(xyz_rig, dtype=np.float64)[:, :2]
    fy = None if yaw_rig is None else np.asarray(yaw_rig, dtype=np.float64)
    if history_xyz_rig is not None:
        hist = np.asarray(history_xyz_rig, dtype=np.float64)[:, :2]
        xy = np.concatenate([hist, fut])
        if fy is not None and history_yaw_rig is not None:
            fy = np.concatenate([np.asarray(history_yaw_rig, dtype=np.float64), fy])
        else:
            fy = None
        return classify(xy, fy)
    return classify(fut, fy)


__all__ = [
    "TICK_US", "LONGITUDINAL_LABELS", "LATERAL_LABELS", "LANE_LABELS", "GROUPS", "MetaActionSpan", "Egomotion",
    "egomotion", "classify", "labels_at", "classify_trajectory_rig", "running_median",
]
