"""CoC ↔ trajectory consistency and reasoning quality (pure numpy; an eval metric and an RL reward).

``consistency(coc, trajectory, history)`` asks whether a trajectory does what its CoC says:

| decision      | agrees when (within the 6.4 s horizon, rig frame at t0)                                 |
|---------------|------------------------------------------------------------------------------------------|
| Stop          | comes to rest (speed < 0.5 m/s) within the horizon, or ends below 1.5 m/s before a known stop line; where it rests fits the cause (below) |
| Yield         | slows by ≥ 1 m/s or is slow (< 3 m/s) before it reaches the crossing / oncoming road user it names (by ≥ 20 % or < 3 m/s if it gets there within the horizon); a rest fits the cause |
| Pass/Overtake | speeds up by ≥ 0.5 m/s                                                                     |
| Gap-search    | changes speed by ≥ 1 m/s, moves sideways ≥ 0.5 m, or waits slow (< 3 m/s)                 |
| Keep Distance | with a known lead (distance, speed, accel at t0): the predicted gap never closes below the time gap, the ego does not stop behind a moving lead, and, in lane or if it slows, it does not fall back (end gap ≤ max(gap0 + 15 m, 2·(2 m + 1 s·v_end) + 10 m)); in lane or merging it never exceeds max(v0, lead speed) + 1 m/s; in lane (lead moving, gap0 ≥ 2 m + 1 s·v0) it does not end below min(lead speed, v0) − 2 m/s; otherwise no acceleration > 1 m/s |
| Adapt Speed   | no acceleration > 0.5 m/s in 3 s, slows by ≥ 0.3 m/s or holds its speed for 2 s, stays ≥ 1 m/s |
| Resume Speed  | from rest: reaches ≥ 3 m/s; else no slowing > 1 m/s (> 40 % in a turn), no stop, and (outside turns) ends ≥ v0 − 0.5 m/s |
| Keep Lane     | lateral offset ≤ 0.6 m and no turn (heading change < 45° at intersection curvature, nor still turning at t0 with ≥ 8° to go) |
| Lane Change d | peak lateral shift ≥ 2.5 m towards d (history included, so a change under way counts)     |
| Nudge d       | peak offset towards d in [0.3, 2.5) m (history included) and larger than any offset the other way |
| Turn d        | heading change ≥ 45° towards d, or ≥ 15° and still turning at the end, or turning now (finishing) |
| Merge / Split | no turn (the ramp geometry decides the sideways motion); Merge d also heads ≥ 3° towards d (window end or history start) or shifts ≥ 1 m towards d, and does not shift ≥ 2.5 m the other way |

Critical-component distances (CoC distances are from the front bumper = distance the rig may still
travel). A Stop / Yield / Gap-search that comes to rest must rest where its cause is: within
[line − 3 m, line + 1 m] of a known stop line (the record's ``stop_line_distance_m``, or "stop line
25 m ahead" in the text); else behind the nearest named object in the path — at most 12 m behind
a pedestrian, a stopped car or a blocker (never past it), at most 25 m short of a crossing /
oncoming vehicle, at most 8 m short of where a still-moving lead was. Waiting behind a named
static / stopped blocker also means not driving through it (passing it ≥ 1 m sideways is fine).

Lane Change / Nudge / Turn stated with Stop, Yield or Gap-search may still be pending at the end of
the horizon (waiting for the gap); they then agree unless the ego moves the other way — and, for
Gap-search, unless it speeds up by more than 1 m/s while not yet moving over (the expert's waits
behind a blocker slow down; its gap-fitting lane changes begin within the horizon).

Each check gives a soft agreement in [0, 1]: 0.5 + margin / scale, clipped, so 0.5 is the
threshold and the reward has a slope near it. The overall score is the mean over the decisions the
CoC states; a CoC with no recognisable decision scores 0 (an unparsable trace earns nothing).

Lateral offsets are measured against a running-median reference heading (``meta_actions``), so a
curve followed in lane is not a lateral shift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cordillera.reasoning.meta_actions import egomotion
from cordillera.reasoning.schema import DIRECTED_LATERAL, VEHICLE_KINDS, CocRecord, parse

DT_S = 0.1  # [s] 10 Hz trajectories, spec/alpamayo_model.md §3
STOP_SPEED_MPS = 0.5  # [m/s] the brief: Stop ⇒ speed < 0.5 m/s
LANE_CHANGE_MIN_M = 2.5  # [m] the brief: Lane Change ⇒ ≥ 2.5 m
TURN_MIN_RAD = np.deg2rad(45.0)  # the brief: Turn ⇒ heading change ≥ ~45°
KEEP_LANE_MAX_M = 0.6  # [m] ours: a nudge departs 0.7-1.5 m, lane keeping stays within ~0.4 m
NUDGE_MIN_M, NUDGE_MAX_M = 0.3, 2.5  # [m]
STOP_LINE_CREEP_MPS = 1.5  # [m/s] Stop before a known line: below this at the end of the horizon
KEEP_DISTANCE_SPEEDUP_MPS = 1.0  # [m/s] Keep Distance: at most this above max(v0, the lead's speed)
YIELD_SLOW_MPS = 3.0  # [m/s] Yield: slow (below this) ...
YIELD_DV_MPS = 1.0  # [m/s] ... or slowing by at least this
YIELD_PASSED_KEEP = 0.8  # ... and, if it gets to the road user's place within the horizon, below this share of v0 before
GAP_SEARCH_DV_MPS = 1.0  # [m/s] Gap-search: the speed change that counts as fitting a gap
GAP_WAIT_SPEEDUP_MPS = 1.0  # [m/s] ours: a Gap-search whose lane change / nudge has not begun speeds up at most this (the expert: ≤ v0 + 0.1)
KEEP_DISTANCE_UNDERSPEED_MPS = 2.0  # [m/s] Keep Distance behind a moving lead ends at most this below min(lead, v0)
KEEP_DISTANCE_DROP_M = 15.0  # [m] Keep Distance: the gap may open by at most this (or to 2x the need + 10 m)
ADAPT_MIN_SPEED_MPS = 1.0  # [m/s] Adapt Speed stays above this (the brief: decelerating but > ~1 m/s)
RESUME_FROM_REST_MPS = 3.0  # [m/s] ours: Resume Speed from rest reaches this (the expert: >= 5.5 within 6.4 s)
RESUME_NET_SLOWING_MPS = 0.5  # [m/s] Resume Speed: the end speed is at most this below v0
TIME_GAP_S = 1.0  # [s] Keep Distance: gap ≥ 2 m + 1.0 s × speed (lenient vs the expert's 1.5 s headway)
MIN_GAP_M = 2.0
PENDING_LONGITUDINAL = ("Stop", "Yield", "Gap-search")  # a lateral manoeuvre may wait on these
TURN_SPEED_KEEP = 0.6  # Resume Speed through a turn may slow to 60 % of v0 for the curvature
TURN_MIN_CURVATURE_1PM = 0.025  # [1/m] intersection-scale curvature (radius <= 40 m), as meta_actions
TURN_FINISH_MIN_RAD = np.deg2rad(8.0)  # Keep Lane: a turn under way at t0 may settle its last 8° of heading
EGO_FRONT_M = 4.09  # [m] rig origin → front bumper, spec/alpasim.md §1.2 (1.3965 + 5.393 / 2)
# Where a trajectory comes to rest must fit the cause the CoC names. CoC distances (stop line,
# objects) are measured from the front bumper along the heading, so they equal the distance the rig
# origin may still travel. The expert's bumper halts ~0.8 m before a line and 2.5-3.5 m behind a
# pedestrian or a stopped car; a queue behind a blocker waits up to ~11 m back; a yield to crossing
# or oncoming vehicles waits at the junction entry, 15-19 m short of the vehicle.
STOP_LINE_EARLY_M = 3.0  # [m] ours: a stop for a line ends at most this far before it
STOP_LINE_LATE_M = 1.0  # [m] ours: ... and at most this far past it
REST_BEHIND_M = 12.0  # [m] ours: a stop / wait for an object in the path ends at most this far behind it
REST_BEHIND_TRAFFIC_M = 25.0  # [m] ours: ... for a crossing / oncoming vehicle (the conflict point is nearer)
BRAKING_LEAD_SLACK_M = 3.0  # [m] ours: ... and at most this past where a lead braking at t0 would come to rest (the expert: ≤ 1.4 m)
REST_BEHIND_MOVING_LEAD_M = 8.0  # [m] ours: a stop behind a lead still moving at t0 ends at most this far behind where it was
IN_PATH_LATERAL_M = 1.0  # [m] ours: a static object in the path is passed only this far sideways or more
POSITION_SCALE_M = 2.0
HARD_BRAKE_MPS2 = 6.0  # [m/s²] ours: ... and, still in its path at the end, can stop before it braking this hard  # [m] soft-score scale of the position checks
# Merge towards d: the expert's merges head 5-8° towards the main road on the ramp's bend, shift
# ~3.6 m in the lane change, or leave a 6-7° heading in the history while straightening; lane
# keeping on a straight road stays within ~1°
MERGE_MIN_HEADING_RAD = np.deg2rad(3.0)
MERGE_MIN_SHIFT_M = 1.0  # [m]


@dataclass(frozen=True)
class ConsistencyResult:
    score: float  # [0, 1]
    consistent: bool
    per_decision: dict = field(default_factory=dict)  # {"longitudinal": float, "lateral": float}
    details: dict = field(default_factory=dict)  # measured quantities


def _soft(margin: float, scale: float) -> float:
    return float(np.clip(0.5 + margin / (2.0 * scale), 0.0, 1.0))


def _as_xy(a, name) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"{name} must be (T, 2+) positions, got shape {a.shape}")
    if not np.all(np.isfinite(a[:, :2])):
        raise ValueError(f"{name} contains NaN or inf")
    return a[:, :2]


def trajectory_features(trajectory, history=None, yaw=None, history_yaw=None) -> dict:
    """Speeds, heading changes and lateral offsets of a future trajectory (rig frame at t0,
    poses at t0+0.1 … ; 10 Hz) with an optional history (poses up to and including t0)."""
    fut = _as_xy(trajectory, "trajectory")
    if len(fut) < 2:
        raise ValueError(f"trajectory needs >= 2 poses, got {len(fut)}")
    if history is None:
        hist = np.zeros((1, 2))
        hy = np.zeros(1) if yaw is not None else None
    else:
        hist = _as_xy(history, "history")
        hy = None if history_yaw is None else np.asarray(history_yaw, dtype=np.float64).reshape(-1)
    if np.linalg.norm(hist[-1]) > 0.5:  # history must end at t0 = the rig origin
        hist = np.concatenate([hist, np.zeros((1, 2))])
        hy = None if hy is None else np.concatenate([hy, [0.0]])
    if np.linalg.norm(fut[0]) < 1e-6:  # a trajectory that repeats the t0 pose
        fut = fut[1:]
        yaw = None if yaw is None else np.asarray(yaw, dtype=np.float64).reshape(-1)[1:]
    path = np.concatenate([hist, fut])
    if yaw is not None and hy is not None:
        yw = np.concatenate([hy, np.asarray(yaw, dtype=np.float64).reshape(-1)])
    else:
        yw = None
    if len(path) < 3:
        path = np.concatenate([path, path[-1:] + (path[-1:] - path[-2:-1])])
    i0 = len(hist) - 1
    em = egomotion(path, yw, DT_S, pad_before=i0)
    v = em.speed_mps
    # t0 speed from the history when there is one (the future may start braking right away)
    v0 = float(v[i0]) if i0 > 0 else float(v[min(1, len(v) - 1)])
    vf = v[i0 + 1:]
    yaw_rel = em.yaw_rad - em.yaw_rad[i0]
    lat = em.lateral_offset_m
    kappa = em.curvature_1pm
    rest = np.flatnonzero(vf < STOP_SPEED_MPS)
    return {
        "x_rest_m": float(path[i0 + 1 + rest[0], 0]) if len(rest) else None,  # where it first comes to rest
        "v0_mps": v0,
        "v_min_mps": float(vf.min()),
        "v_max_mps": float(vf.max()),
        "v_end_mps": float(vf[-1]),
        "x_end_m": float(path[-1, 0]),
        "x_fwd_m": path[i0 + 1:, 0].copy(),
        "y_fwd_m": path[i0 + 1:, 1].copy(),
        "v_fut_mps": vf.copy(),
        "lat_fut_m": lat[i0 + 1:].copy(),
        "lat_hist_m": lat[:i0 + 1].copy(),
        "yaw_end_rad": float(yaw_rel[-1]),
        "yaw_hist_start_rad": float(yaw_rel[0]),
        "yaw_rate_end_radps": float((em.yaw_rad[-1] - em.yaw_rad[-3]) / (2 * DT_S)) if len(path) >= 3 else 0.0,
        "curvature_t0_1pm": float(np.mean(kappa[max(i0 - 2, 0):i0 + 3])),
        "mean_abs_curvature_1pm": float(np.mean(np.abs(kappa[i0:]))),
        "max_abs_curvature_1pm": float(np.max(np.abs(kappa[i0:]))),
    }


# ----------------------------------------------------------------------------------------------
# Critical-component distances: where the trajectory stops or passes against what the CoC names
# ----------------------------------------------------------------------------------------------
_IN_PATH_RELATIONS = ("lead", "ahead", "blocking", "crossing", "oncoming")
_ROAD_USERS_ON_FOOT = ("pedestrian", "cyclist", "animal")


def _rest_window(rec: CocRecord) -> tuple[float, float] | None:
    """(earliest, latest) forward position [m] where a stop or wait for the CoC's cause may end,
    or None when the CoC names no located cause. A stop line decides when known; else the nearest
    object in the path."""
    if rec.stop_line_distance_m is not None:
        sl = float(rec.stop_line_distance_m)
        return sl - STOP_LINE_EARLY_M, sl + STOP_LINE_LATE_M
    objs = [o for o in rec.objects if o.distance_m is not None and o.relation in _IN_PATH_RELATIONS]
    if not objs:
        return None
    o = min(objs, key=lambda o: o.distance_m)
    d = float(o.distance_m)
    moving = o.state not in ("stopped", "static", "parked") and (o.speed_mps is None or abs(o.speed_mps) >= STOP_SPEED_MPS)
    if o.relation in ("lead", "ahead") and moving:
        a = o.accel_mps2 or 0.0
        if a <= -1.0:  # a braking lead comes to rest where its braking at t0 ends: the ego rests behind that
            return d - REST_BEHIND_MOVING_LEAD_M, d + (o.speed_mps or 0.0) ** 2 / (2.0 * -a) + BRAKING_LEAD_SLACK_M
        return d - REST_BEHIND_MOVING_LEAD_M, np.inf  # the lead goes on moving: no upper bound from it
    if o.relation in ("crossing", "oncoming") and o.kind not in _ROAD_USERS_ON_FOOT:
        return d - REST_BEHIND_TRAFFIC_M, d
    return d - REST_BEHIND_M, d


def _rest_position_margin(rec: CocRecord, f: dict, x_m: float | None) -> float | None:
    """Margin [m] of the rest position ``x_m`` inside the CoC's rest window (None: nothing to check)."""
    win = _rest_window(rec)
    if win is None or x_m is None:
        return None
    return float(min(x_m - win[0], win[1] - x_m))


def _pass_through_margin(rec: CocRecord, f: dict) -> float | None:
    """A static / stopped object named in the path is not driven through: beyond its distance the
    trajectory is offset sideways by >= IN_PATH_LATERAL_M. Margin [m] (None: no such object)."""
    objs = [o for o in rec.objects if o.distance_m is not None and o.state in ("stopped", "static", "parked")
            and (o.relation == "blocking" or (o.relation in ("lead", "ahead") and o.kind not in ("cone", "barrier")))]
    if not objs:  # cones and barriers "ahead" line the lane edge; only a blocking one closes the lane
        return None
    d = float(min(o.distance_m for o in objs))
    beyond = f["x_fwd_m"] > d
    if not beyond.any():
        # short of it at the end: still able to stop before it (or it is still being passed sideways)
        if abs(f["y_fwd_m"][-1]) >= IN_PATH_LATERAL_M:
            return float(d - f["x_end_m"])
        return float(d - f["x_end_m"] - f["v_end_mps"] ** 2 / (2.0 * HARD_BRAKE_MPS2))
    # sideways position in the t0 rig frame (the lane-relative offset re-centres after a lane change)
    return float(np.min(np.abs(f["y_fwd_m"][beyond])) - IN_PATH_LATERAL_M)


def _give_way_score(rec: CocRecord, f: dict) -> float:
    """Yield gives way *before* the road user it names (crossing or oncoming): the slowing that Yield
    needs (by >= 1 m/s, or to < 3 m/s) happens before the ego reaches where that road user was at
    t0; if it reaches that place within the horizon, it was slow (< 3 m/s, waiting) before it. It
    may go on afterwards (the road user has cleared); 1.0 when the CoC names no such user."""
    objs = [o for o in rec.objects if o.distance_m is not None and o.relation in ("crossing", "oncoming")]
    if not objs:
        return 1.0
    before = f["x_fwd_m"] <= min(o.distance_m for o in objs)
    if not before.any():
        return 0.0
    v = float(np.min(f["v_fut_mps"][before]))
    if before.all():  # the encounter lies beyond the horizon: slowing down towards it gives way
        return _soft(max(YIELD_SLOW_MPS - v, (f["v0_mps"] - YIELD_DV_MPS) - v), 1.0)
    # ... but a trajectory that gets to where the road user was within the horizon has let it pass
    # first only if it waited (slow) or clearly slowed (by >= 20 %) before getting there
    return _soft(max(YIELD_SLOW_MPS - v, YIELD_PASSED_KEEP * f["v0_mps"] - v), 1.0)


# ----------------------------------------------------------------------------------------------
# Per-decision checks: (margin, scale) -> soft score
# ----------------------------------------------------------------------------------------------
def _check_longitudinal(rec: CocRecord, f: dict) -> float:
    """The decision's speed profile, then where it stops / passes against the CoC's distances."""
    score = _check_speed_profile(rec, f)
    margins = []
    if rec.longitudinal in ("Stop", "Yield", "Gap-search"):
        x = f["x_rest_m"]
        if x is None and rec.longitudinal == "Stop" and rec.stop_line_distance_m is not None \
                and f["v_end_mps"] < STOP_LINE_CREEP_MPS:
            x = f["x_end_m"]  # creeping up to the line at the end of the horizon
        margins.append(_rest_position_margin(rec, f, x))
        # waiting for the cause: still behind a blocker it names (a decision that moves on, e.g.
        # Resume Speed with a lane change, may already be beside it at t0 — the CoC has no lateral position)
        margins.append(_pass_through_margin(rec, f))
    margins = [m for m in margins if m is not None]
    if margins:
        score = min(score, _soft(min(margins), POSITION_SCALE_M))
    if rec.longitudinal == "Yield":
        score = min(score, _give_way_score(rec, f))
    return score


def _check_speed_profile(rec: CocRecord, f: dict) -> float:
    v0, vmin, vmax, vend = f["v0_mps"], f["v_min_mps"], f["v_max_mps"], f["v_end_mps"]
    lon = rec.longitudinal
    if lon == "Stop":
        # comes to rest within the horizon, or is about to rest before a known stop line
        m = STOP_SPEED_MPS - vmin
        if rec.stop_line_distance_m is not None:
            line_x = rec.stop_line_distance_m + EGO_FRONT_M
            m = max(m, min(line_x + 1.0 - f["x_end_m"], STOP_LINE_CREEP_MPS - vend, (v0 - 1.0) - vend))
        return _soft(m, 0.5)
    if lon == "Yield":
        return _soft(max(YIELD_SLOW_MPS - vmin, (v0 - YIELD_DV_MPS) - vmin), 1.0)
    if lon == "Pass/Overtake":
        return _soft(vmax - v0 - 0.5, 0.5)
    if lon == "Gap-search":
        lat_move = float(np.max(np.abs(f["lat_fut_m"])))
        # fits the speed to a gap: changes speed by >= 1 m/s, waits slow (< 3 m/s), or already
        # moves sideways; cruising on unchanged is not searching for a gap
        return _soft(max(max(vmax - v0, v0 - vmin) - GAP_SEARCH_DV_MPS, 3.0 - vmin, lat_move - 0.5), 0.3)
    if lon == "Keep Distance":
        lead = next((o for o in rec.objects if o.distance_m is not None and o.speed_mps is not None
                     and o.relation in ("lead", "cut_in_left", "cut_in_right", "merging", "ahead")), None)
        if lead is None:
            return _soft((v0 + 1.0) - vmax, 0.5)
        # the lead as known at t0: its speed, and its acceleration if it is speeding up (a lead
        # moving off); a braking lead is extrapolated at constant speed (the ego reacts later)
        t = DT_S * np.arange(1, len(f["v_fut_mps"]) + 1)
        v_l0 = max(lead.speed_mps, 0.0)
        a_l = max(lead.accel_mps2 or 0.0, 0.0)
        v_l = np.minimum(v_l0 + a_l * t, max(v_l0, vmax))
        s_l = np.cumsum(v_l) * DT_S
        gap = lead.distance_m + s_l - f["x_fwd_m"]
        if lead.relation == "lead":
            need = np.minimum(MIN_GAP_M + TIME_GAP_S * f["v_fut_mps"], 0.8 * lead.distance_m)
        else:  # a cut-in / merging car is not yet straight ahead: only no contact is required
            need = np.full_like(gap, min(MIN_GAP_M, 0.8 * lead.distance_m))
        m = float(np.min(gap - need))
        if v_l0 >= 3.0 and (lead.accel_mps2 or 0.0) > -1.0:  # following a moving lead is not stopping
            m = min(m, 2.0 * (vmin - 1.0))
            # ... nor, in lane and not too close at t0, slowing well below it: the ego ends near the
            # lead's speed (or its own, if lower); a cut-in at a short gap must open the gap first
            if rec.lateral in (None, "Keep Lane") and lead.distance_m >= MIN_GAP_M + TIME_GAP_S * v0:
                m = min(m, 2.0 * (vend - (min(float(v_l[-1]), v0) - KEEP_DISTANCE_UNDERSPEED_MPS)))
        # ... and it tracks the lead: it does not fall back far behind it (slowing for something
        # else, or moving off far slower than a lead that is already going) — the end gap stays
        # within max(start gap + 15 m, 2 × the time-gap need + 10 m); leaving the lane (a lead that
        # is being passed) is exempt unless the ego slows
        if lead.relation == "lead" and (vend < v0 - 1.0 or rec.lateral in (None, "Keep Lane")):
            need_end = MIN_GAP_M + TIME_GAP_S * vend  # not capped by a close start: the gap may open to it
            m = min(m, max(lead.distance_m + KEEP_DISTANCE_DROP_M, 2.0 * need_end + 10.0) - float(gap[-1]))
        # in lane (or merging in behind it) the lead sets the speed: the ego does not speed up beyond
        # both its own t0 speed and the lead's (closing in on purpose is Resume Speed or
        # Pass/Overtake); a lane change leaves it
        if rec.lateral in (None, "Keep Lane", "Merge"):
            m = min(m, 2.0 * ((max(v0, float(v_l[-1])) + KEEP_DISTANCE_SPEEDUP_MPS) - vmax))
        return _soft(m, 2.0)
    if lon == "Adapt Speed":
        v3 = f["v_fut_mps"][:30]
        v2 = f["v_fut_mps"][:20]
        # slows, or holds an adapted speed, and does not speed up in the next 3 s
        m = min((v0 + 0.5) - float(v3.max()), max((v0 - 0.3) - float(v3.min()), (v0 + 0.3) - float(v2.max())))
        # slowing for a curve, a zone or a limit is not stopping (nor standing still)
        m = min(m, vmin - ADAPT_MIN_SPEED_MPS)
        return _soft(m, 0.5)
    if lon == "Resume Speed":
        if v0 < 1.0:  # from rest: gets going (a creep to a walking pace is not back to speed)
            return _soft(vmax - RESUME_FROM_REST_MPS, 0.5)
        floor = min(v0 - 1.0, TURN_SPEED_KEEP * v0) if rec.lateral == "Turn" else v0 - 1.0  # turns slow the car
        m = min(vmin - floor, vmin - STOP_SPEED_MPS)
        if rec.lateral != "Turn":  # holds or regains speed: no net slowing over the horizon
            m = min(m, vend - (v0 - RESUME_NET_SLOWING_MPS))
        return _soft(m, 0.5)
    raise ValueError(f"unknown longitudinal decision {lon!r}")


def _check_lateral(rec: CocRecord, f: dict) -> float:
    score = _check_lateral_motion(rec, f)
    lat, d = rec.lateral, rec.lateral_direction
    if lat in DIRECTED_LATERAL and lat != "Keep Lane" and rec.longitudinal in PENDING_LONGITUDINAL and score < 0.5:
        # a manoeuvre waiting on a stop / yield / gap may not have started within the horizon;
        # it agrees as long as the ego does not move the other way
        s = 1.0 if d == "left" else -1.0
        other = max(float(np.max(-s * f["lat_fut_m"])), 0.0)
        other_yaw = max(-s * f["yaw_end_rad"], 0.0)
        waiting = min(_soft(0.5 - other, 0.5), _soft(np.deg2rad(15.0) - other_yaw, 0.2))
        if lat != "Turn":  # ... nor turns off the road instead of changing lanes / nudging
            waiting = min(waiting, _soft(TURN_MIN_RAD - abs(f["yaw_end_rad"]), 0.3))
        if lat == "Nudge":  # ... nor changes lanes instead of nudging
            waiting = min(waiting, _soft(NUDGE_MAX_M - float(np.max(np.abs(f["lat_fut_m"]))), 0.2))
        if rec.longitudinal == "Gap-search":  # ... and, not yet moving over, it waits: it does not speed up
            waiting = min(waiting, _soft((f["v0_mps"] + GAP_WAIT_SPEEDUP_MPS) - f["v_max_mps"], 0.5))
        score = max(score, waiting)
    return score


def _check_lateral_motion(rec: CocRecord, f: dict) -> float:
    lat, d = rec.lateral, rec.lateral_direction
    lf, lh = f["lat_fut_m"], f["lat_hist_m"]
    s = 1.0 if d == "left" else -1.0
    if lat == "Keep Lane":
        m = KEEP_LANE_MAX_M - float(np.max(np.abs(lf)))
        score = 1.0
        if f["max_abs_curvature_1pm"] >= TURN_MIN_CURVATURE_1PM:  # intersection-scale curvature: is it a turn?
            m = min(m, TURN_MIN_RAD - abs(f["yaw_end_rad"]))
            # ... or the end of one: still turning at t0 with more than a lane's settling heading to go
            finishing = min(20.0 * (abs(f["curvature_t0_1pm"]) - TURN_MIN_CURVATURE_1PM),
                            abs(f["yaw_end_rad"]) - TURN_FINISH_MIN_RAD)
            score = _soft(-finishing, 0.3)
        return min(score, _soft(m, 0.5))
    base = min(float(np.min(s * lh)), 0.0)  # a manoeuvre under way in the history counts
    if lat == "Lane Change":
        # a full transition towards d: peak shift >= 2.5 m (a short pass may already come back
        # within the horizon; that return is the next lane change, the other way)
        shift = float(np.max(s * lf)) - base
        return _soft(shift - LANE_CHANGE_MIN_M, 0.75)
    if lat == "Nudge":
        # a small departure towards d (or the way back from one), never a full lane width
        peak = float(np.max(s * lf)) - base
        other = float(np.max(-s * lf))
        return _soft(min(peak - NUDGE_MIN_M, NUDGE_MAX_M - peak, peak - other), 0.2)
    if lat == "Turn":
        # heading change towards d, counting a turn already under way in the history
        dtheta = max(s * f["yaw_end_rad"], s * (f["yaw_end_rad"] - f["yaw_hist_start_rad"]))
        still = min(s * f["yaw_end_rad"] - np.deg2rad(15.0), s * f["yaw_rate_end_radps"] - 0.1)
        # finishing a turn: turning now at intersection curvature, towards d
        now = 20.0 * (s * f["curvature_t0_1pm"] - 0.5 * TURN_MIN_CURVATURE_1PM)
        return _soft(max(dtheta - TURN_MIN_RAD, still, now), 0.3)
    if lat in ("Merge", "Split"):
        # the ramp geometry decides how much sideways motion a merge shows (the lane may curve
        # into the main road with no offset from it), so a merge is not a turn, and a Merge
        # towards d heads towards d somewhere in the window — on the ramp's bend (now or later),
        # in the lane shift, or straightening out of it (the history's heading was towards d)
        no_turn = _soft(TURN_MIN_RAD - abs(f["yaw_end_rad"]), 0.3)
        if lat == "Split" or d is None:  # Split directions are not validated against the expert
            return no_turn
        heading = max(s * f["yaw_end_rad"], s * f["yaw_hist_start_rad"])
        shift = float(np.max(s * lf)) - base
        towards = max(_soft(heading - MERGE_MIN_HEADING_RAD, 0.03), _soft(shift - MERGE_MIN_SHIFT_M, 0.5))
        # ... and is not a lane change the other way (straightening out of a merge is not moving away)
        other = float(np.max(-s * lf)) - min(float(np.min(-s * lh)), 0.0)
        return min(no_turn, towards, _soft(LANE_CHANGE_MIN_M - other, 0.75))
    raise ValueError(f"unknown lateral decision {lat!r}")


def consistency(coc, trajectory, history=None, yaw=None, history_yaw=None) -> ConsistencyResult:
    """Does ``trajectory`` (future poses at t0+0.1 …, rig frame at t0, 10 Hz) do what ``coc`` (a
    CoC string or ``CocRecord``) says? ``history``: past poses up to t0 in the same frame."""
    rec = parse(coc) if isinstance(coc, str) else coc
    if not isinstance(rec, CocRecord):
        raise ValueError(f"coc must be a str or CocRecord, got {type(coc).__name__}")
    f = trajectory_features(trajectory, history, yaw, history_yaw)
    per = {}
    if rec.longitudinal is not None:
        per["longitudinal"] = _check_longitudinal(rec, f)
    if rec.lateral is not None:
        per["lateral"] = _check_lateral(rec, f)
    details = {k: v for k, v in f.items() if not isinstance(v, np.ndarray)}
    details["lat_peak_m"] = float(np.max(np.abs(f["lat_fut_m"])))
    details["lat_end_m"] = float(f["lat_fut_m"][-1])
    if not per:
        return ConsistencyResult(0.0, False, per, details)
    score = float(np.mean(list(per.values())))
    return ConsistencyResult(score, all(v >= 0.5 for v in per.values()), per, details)


# ----------------------------------------------------------------------------------------------
# Reasoning quality: predicted CoC vs label CoC
# ----------------------------------------------------------------------------------------------
def _kind_match(a: str, b: str) -> bool:
    return a == b or (a in VEHICLE_KINDS and b in VEHICLE_KINDS and "vehicle" in (a, b)) or \
        ({a, b} == {"car", "parked_car"})


def reasoning_quality(pred_coc, label_coc) -> dict:
    """Decision match (longitudinal, lateral, direction) and critical-object recall of a predicted
    CoC against its label; ``score`` is their mean. Strings are parsed with ``schema.parse``."""
    p = parse(pred_coc) if isinstance(pred_coc, str) else pred_coc
    g = parse(label_coc) if isinstance(label_coc, str) else label_coc
    lon = float(p.longitudinal == g.longitudinal)
    lat = float(p.lateral == g.lateral)
    dirn = float(p.lateral_direction == g.lateral_direction) if g.lateral_direction or p.lateral_direction else lat
    label_kinds = [o.kind for o in g.objects]
    pred_kinds = [o.kind for o in p.objects]
    if label_kinds:
        hit = sum(any(_kind_match(k, q) for q in pred_kinds) for k in label_kinds)
        recall = hit / len(label_kinds)
    else:
        recall = 1.0
    label_colours = {s.colour for s in g.signals if s.colour}
    sig = float(label_colours <= {s.colour for s in p.signals if s.colour}) if label_colours else 1.0
    return {
        "longitudinal_match": lon,
        "lateral_match": lat,
        "direction_match": dirn,
        "object_recall": float(recall),
        "signal_match": sig,
        "score": float(np.mean([lon, lat, dirn, recall])),
    }


__all__ = ["ConsistencyResult", "trajectory_features", "consistency", "reasoning_quality"]
