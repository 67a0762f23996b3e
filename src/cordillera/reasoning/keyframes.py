"""Keyframes: the times t0 at which a CoC label is written (spec/alpamayo_training_data.md §6.1
item 2, §1.4).

A keyframe is the onset of a meta-action span (a transition) that lasts ≥ 1 s, or a hazard onset
the simulator knows (``Scenario.hazards``). Either must leave ≥ 1.6 s of history and ≥ 6.4 s of
future inside the clip (the training event filter, §1.4). Keyframes closer than
``MIN_SEPARATION_US`` collapse into one, preferring the hazard (its cause is known exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cordillera.reasoning.meta_actions import TICK_US, MetaActionSpan, classify

MIN_DURATION_TICKS = 10  # [ticks] 1.0 s, spec §6.1 (--min_duration)
MIN_HISTORY_US = 1_600_000  # [µs] spec §1.4 event filter: t0 >= 1.6 s
MIN_FUTURE_US = 6_400_000  # [µs] spec §1.4: t0 + 6.4 s <= clip end
MIN_SEPARATION_US = 1_000_000  # ours: one label per second at most
# Onsets of these labels are not transitions worth a label (the fallback states).
BORING_ONSETS = ("maintain_speed", "go_straight", "keep_lane")


@dataclass(frozen=True)
class Keyframe:
    t_us: int  # clip-relative, on the 100 ms grid
    kind: str  # "meta_action" | "hazard"
    source: str  # meta-action label or hazard kind
    actor_id: str | None = None


def meta_action_keyframes(spans: dict[str, list[MetaActionSpan]], t0_us: int = 0) -> list[Keyframe]:
    """Onsets of spans ≥ 1 s (except the first span of a group, which is no transition)."""
    out = []
    for group, sps in spans.items():
        if group == "lateral":  # not fed to the labeler in the release (spec §6.2)
            continue
        for k, sp in enumerate(sps):
            if k == 0 or sp.duration_ticks < MIN_DURATION_TICKS or sp.label in BORING_ONSETS:
                continue
            out.append(Keyframe(t0_us + sp.start * TICK_US, "meta_action", sp.label))
    return out


def select_keyframes(t_us: np.ndarray, xy: np.ndarray, yaw: np.ndarray | None, hazards=(),
                     clip_end_us: int | None = None) -> list[Keyframe]:
    """Keyframes of one clip from its 10 Hz ego track (clip-relative ``t_us``) and hazards
    (objects with ``t_us``, ``kind``, ``actor_id``), sorted by time."""
    t_us = np.asarray(t_us, dtype=np.int64)
    if t_us.ndim != 1 or len(t_us) != len(xy):
        raise ValueError(f"t_us {t_us.shape} and xy {np.shape(xy)} disagree")
    if len(t_us) > 1 and np.any(np.diff(t_us) != TICK_US):
        raise ValueError("keyframes need a 10 Hz track with no gaps")
    end = int(t_us[-1]) if clip_end_us is None else int(clip_end_us)
    start = int(t_us[0])
    spans = classify(xy, yaw)
    cands = [Keyframe(int(h.t_us) // TICK_US * TICK_US, "hazard", h.kind, getattr(h, "actor_id", None))
             for h in hazards]
    cands += meta_action_keyframes(spans, start)

    def ok(k: Keyframe) -> bool:
        return k.t_us - start >= MIN_HISTORY_US and k.t_us + MIN_FUTURE_US <= end

    cands = sorted((k for k in cands if ok(k)), key=lambda k: (k.t_us, k.kind != "hazard"))
    out: list[Keyframe] = []
    for k in cands:
        if out and k.t_us - out[-1].t_us < MIN_SEPARATION_US:
            if k.kind == "hazard" and out[-1].kind != "hazard":
                out[-1] = k
            continue
        out.append(k)
    return out


def rollout_keyframes(rollout, scenario) -> list[Keyframe]:
    """Keyframes of a simulator rollout: the ego track plus ``scenario.hazards``."""
    t = rollout.t_us()
    if len(t) < 3:
        return []
    xyy = rollout.ego_xy_yaw()
    return select_keyframes(t, xyy[:, :2], xyy[:, 2], scenario.hazards, clip_end_us=int(t[-1]))


def dense_t0s(end_us: int, start_us: int, every_us: int, force_gt_end_us: int = 0) -> list[int]:
    """A t0 grid for dense labels: start, start + every, … ≤ clip end − 6.4 s, never inside the
    force-GT warm-up (where the ego does not drive the expert's decision), on the 100 ms grid."""
    if every_us <= 0:
        raise ValueError(f"every_us must be > 0, got {every_us}")
    first = max(start_us, force_gt_end_us)
    first = int(-(-first // TICK_US) * TICK_US)
    return list(range(first, end_us - MIN_FUTURE_US + 1, every_us))


def grid_keyframes(rollout, scenario, every_us: int, start_us: int = MIN_HISTORY_US) -> list[Keyframe]:
    """The rollout's own keyframes plus a t0 every ``every_us`` (``dense_t0s``), one per time (a
    keyframe wins over a grid point at the same t0), in time order: every sample gets a label."""
    end_us = int(rollout.t_us()[-1])
    grid = [Keyframe(t, "meta_action", "grid") for t in dense_t0s(end_us, start_us, every_us, rollout.force_gt_end_us)]
    return sorted({kf.t_us: kf for kf in grid + rollout_keyframes(rollout, scenario)}.values(), key=lambda k: k.t_us)


__all__ = ["Keyframe", "MIN_DURATION_TICKS", "MIN_HISTORY_US", "MIN_FUTURE_US", "meta_action_keyframes",
           "select_keyframes", "rollout_keyframes", "dense_t0s", "grid_keyframes", "rollout_window"]


HISTORY_POSES = 16  # spec §1.4: 16 poses at t0 − 1.5 … t0
FUTURE_POSES = 64  # spec §1.4: 64 poses at t0 + 0.1 … t0 + 6.4 s


def rollout_window(rollout, t0_us: int, history: int = HISTORY_POSES, future: int = FUTURE_POSES):
    """(history_xy (H, 2), history_yaw (H,), future_xy (F, 2), future_yaw (F,)) of the driven ego
    track around ``t0_us``, in the rig frame at t0 (x forward, y left). The history ends at t0."""
    t = rollout.t_us()
    idx = np.nonzero(t == int(t0_us))[0]
    if len(idx) == 0:
        raise ValueError(f"t0={t0_us} µs is not a step of rollout {rollout.rollout_id}")
    i0 = int(idx[0])
    if i0 - (history - 1) < 0 or i0 + future >= len(t):
        raise ValueError(f"t0={t0_us} µs leaves too little history/future in rollout {rollout.rollout_id}")
    xyy = rollout.ego_xy_yaw()[i0 - (history - 1): i0 + future + 1]
    x0, y0, h0 = xyy[history - 1]
    c, s = np.cos(h0), np.sin(h0)
    dx, dy = xyy[:, 0] - x0, xyy[:, 1] - y0
    xy = np.stack([c * dx + s * dy, -s * dx + c * dy], axis=1)
    yaw = np.unwrap(xyy[:, 2] - h0)
    yaw = yaw - yaw[history - 1]
    return xy[:history], yaw[:history], xy[history:], yaw[history:]
