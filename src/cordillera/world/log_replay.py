"""Log-replay variants of scenarios (AlpaSim's default traffic: recorded tracks, spec/alpasim.md §3.3).

``to_log_replay(scenario, tracks)`` swaps every moving actor's behaviour for a :class:`LogBehavior`
built from the given tracks (e.g. recorded from a reactive rollout by the simulator) and sets
``traffic_mode="log"``. ``scripted_tracks`` makes such tracks without a simulator: a 1-D IDM along
each actor's route that honours scripted brake and lane-change events, red lights at stop lines and
vehicles ahead on the same path, but ignores the ego (replayed traffic never reacts to the ego).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from cordillera.world.map import Lane
from cordillera.world.scenario import (
    CONTROL_PERIOD_US, ActorSpec, IdmBehavior, LogBehavior, Scenario, StaticBehavior, WalkerBehavior,
)

Track = tuple[np.ndarray, np.ndarray, np.ndarray]  # (t_us (T,), xy (T, 2), yaw_rad (T,))


def _as_log(actor_id: str, track) -> LogBehavior:
    if isinstance(track, LogBehavior):
        t, xy, yaw = track.t_us, track.xy, track.yaw_rad
    elif isinstance(track, dict):
        t, xy, yaw = track["t_us"], track["xy"], track["yaw_rad"]
    else:
        t, xy, yaw = track
    t = np.asarray(t, dtype=np.int64)
    xy = np.asarray(xy, dtype=np.float64)
    yaw = np.asarray(yaw, dtype=np.float64)
    if t.ndim != 1 or len(t) < 2 or xy.shape != (len(t), 2) or yaw.shape != (len(t),):
        raise ValueError(f"track of {actor_id}: need t (T>=2,), xy (T, 2), yaw (T,), got {t.shape}, {xy.shape}, {yaw.shape}")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"track of {actor_id}: timestamps must be strictly increasing")
    if not (np.all(np.isfinite(xy)) and np.all(np.isfinite(yaw))):
        raise ValueError(f"track of {actor_id}: NaN or inf in poses")
    return LogBehavior(tuple(int(v) for v in t), tuple((float(a), float(b)) for a, b in xy.round(4)),
                       tuple(float(v) for v in yaw.round(5)))


def to_log_replay(scenario: Scenario, tracks: dict) -> Scenario:
    """Scenario whose moving actors replay ``tracks`` (actor id -> (t_us, xy, yaw) | LogBehavior |
    dict). Static actors without a track stay static; a moving actor without a track is an error.
    Each actor's initial pose and speed are set from its track."""
    unknown = set(tracks) - {a.id for a in scenario.actors}
    if unknown:
        raise ValueError(f"{scenario.id}: tracks for unknown actors {sorted(unknown)}")
    missing = [a.id for a in scenario.actors if a.id not in tracks and not isinstance(a.behavior, StaticBehavior)]
    if missing:
        raise ValueError(f"{scenario.id}: no track for moving actors {missing}")
    actors = []
    for a in scenario.actors:
        if a.id not in tracks:
            actors.append(a)
            continue
        b = _as_log(a.id, tracks[a.id])
        (x0, y0), (x1, y1) = b.xy[0], b.xy[1]
        speed = math.hypot(x1 - x0, y1 - y0) / ((b.t_us[1] - b.t_us[0]) * 1e-6)
        actors.append(replace(a, x_m=x0, y_m=y0, yaw_rad=b.yaw_rad[0], speed_mps=round(speed, 4), behavior=b,
                              appear_us=max(a.appear_us, b.t_us[0])))
    return replace(scenario, actors=tuple(actors), traffic_mode="log")


# ----------------------------------------------------------------------------------------------
# Scripted tracks
# ----------------------------------------------------------------------------------------------
def _route_lane(scenario: Scenario, route) -> tuple[Lane, list[tuple[str, float]]]:
    pts, offsets, s = [], [], 0.0
    for lid in route:
        p = scenario.map.lane(lid).centerline_xy
        if pts and np.linalg.norm(p[0] - pts[-1][-1]) < 1e-6:
            p = p[1:]
        offsets.append((lid, s))
        s += scenario.map.lane(lid).length_m
        pts.append(p)
    return Lane("route", np.concatenate(pts)), offsets


def _idm_accel(v, v0, gap, dv, p) -> float:
    s_star = p.min_gap_m + max(0.0, v * p.time_headway_s + v * dv / (2 * math.sqrt(p.max_accel_mps2 * p.comfort_decel_mps2)))
    free = 1.0 - (v / max(v0, 0.1)) ** p.delta
    return p.max_accel_mps2 * (free - (s_star / max(gap, 0.1)) ** 2 if gap < 1e9 else free)


def scripted_tracks(scenario: Scenario, dt_us: int = CONTROL_PERIOD_US) -> dict[str, Track]:
    """Open-loop tracks for every moving actor over the scenario duration (see module docstring)."""
    n = scenario.duration_us // dt_us + 1
    t = np.arange(n, dtype=np.int64) * dt_us
    dt = dt_us * 1e-6
    out: dict[str, Track] = {}
    # Walkers: along their path at constant speed from start_us.
    for a in scenario.actors:
        b = a.behavior
        if isinstance(b, WalkerBehavior):
            path = Lane("walk", np.asarray(b.path_xy, dtype=np.float64))
            s = np.clip((t - b.start_us) * 1e-6 * b.speed_mps, 0.0, path.length_m)
            xy = path.position(s)
            yaw = np.where(s < path.length_m, path.heading_at(s), path.heading_at(path.length_m))
            out[a.id] = (t, xy, yaw)
    # Vehicles: 1-D IDM along their route, stepping all of them together.
    veh = [a for a in scenario.actors if isinstance(a.behavior, IdmBehavior)]
    lanes, offs, s, v, lc_lat = {}, {}, {}, {}, {}
    for a in veh:
        lanes[a.id], offs[a.id] = _route_lane(scenario, a.behavior.route_lane_ids)
        (s0,), _ = lanes[a.id].to_frenet(np.array([[a.x_m, a.y_m]]))
        s[a.id], v[a.id] = float(s0), float(a.speed_mps)
    stops = {}  # actor -> [(route s of the stop line, light)]
    for a in veh:
        if not a.behavior.obey_signals:
            continue
        lst = []
        for lid, off in offs[a.id]:
            for light in scenario.traffic_lights:
                if lid in light.lane_ids:
                    for sl in scenario.map.stop_lines_on(lid):
                        lst.append((off + sl.s_m, light))
        stops[a.id] = lst
    hist = {a.id: np.zeros((n, 2)) for a in veh}  # route s, speed
    ev_v0 = {}  # (actor, event index) -> speed when the brake event began
    for k, tk in enumerate(t):
        acc = {}
        for a in veh:
            b, p = a.behavior, a.behavior.params
            gap, dv = 1e12, 0.0
            for o in veh:  # nearest vehicle ahead on the same route (same lanes, route coordinates)
                if o.id == a.id:
                    continue
                lid_o, s_o = _locate(offs[o.id], s[o.id])
                base = dict(offs[a.id]).get(lid_o)
                if base is None:
                    continue
                ds = base + s_o - s[a.id] - 0.5 * (a.length_m + o.length_m)
                if -0.5 * (a.length_m + o.length_m) < ds < gap:
                    gap, dv = ds, v[a.id] - v[o.id]
            for s_stop, light in stops.get(a.id, ()):
                d = s_stop - s[a.id] - 0.5 * a.length_m
                state = light.program.state_at(int(tk))
                if 0.0 < d < gap and state in ("red", "yellow", "flashing_red"):
                    # run a yellow only when it cannot stop comfortably any more
                    if state != "yellow" or d > v[a.id] ** 2 / (2 * p.comfort_decel_mps2):
                        gap, dv = d, v[a.id]
            ac = _idm_accel(v[a.id], p.desired_speed_mps, gap, dv, p)
            for i, ev in enumerate(b.brake_events):
                if tk >= ev.t_us and (a.id, i) not in ev_v0:
                    ev_v0[(a.id, i)] = v[a.id]
                if (a.id, i) in ev_v0:
                    t_reach = ev.t_us + 1e6 * max(0.0, ev_v0[(a.id, i)] - ev.target_speed_mps) / ev.decel_mps2
                    if tk < t_reach + ev.hold_us:
                        ac = min(ac, -ev.decel_mps2 if v[a.id] > ev.target_speed_mps else 0.0)
            acc[a.id] = ac
        for a in veh:
            hist[a.id][k] = (s[a.id], v[a.id])
            v_new = max(0.0, v[a.id] + acc[a.id] * dt)  # never reverse
            s[a.id] += 0.5 * (v[a.id] + v_new) * dt
            v[a.id] = v_new
    for a in veh:
        h = hist[a.id]
        lane = lanes[a.id]
        xy = lane.position(h[:, 0])
        for ev in a.behavior.lane_change_events:  # blend sideways to the target lane, then stay on it
            target = scenario.map.lane(ev.target_lane_id)
            st, rt = target.to_frenet(xy)
            u = np.clip((t - ev.t_us) / ev.duration_us, 0.0, 1.0)
            u = u * u * (3 - 2 * u)
            xy = target.position(st, rt * (1.0 - u))
        d = np.diff(xy, axis=0)
        yaw = np.arctan2(d[:, 1], d[:, 0])
        moving = np.linalg.norm(d, axis=1) > 1e-3
        yaw = np.where(moving, yaw, np.nan)
        yaw = np.concatenate([yaw, yaw[-1:]])
        first = lane.heading_at(h[0, 0])
        yaw[0] = first if np.isnan(yaw[0]) else yaw[0]
        for i in range(1, n):  # hold the heading while stopped
            if np.isnan(yaw[i]):
                yaw[i] = yaw[i - 1]
        out[a.id] = (t, xy, np.unwrap(yaw))
    return out


def _locate(offsets: list[tuple[str, float]], s_route: float) -> tuple[str, float]:
    lid, off = offsets[0]
    for l2, o2 in offsets:
        if s_route >= o2:
            lid, off = l2, o2
    return lid, s_route - off


def scripted_log_replay(scenario: Scenario) -> Scenario:
    """``to_log_replay`` with :func:`scripted_tracks`: the log variant of a generated scenario."""
    return to_log_replay(scenario, scripted_tracks(scenario))


__all__ = ["to_log_replay", "scripted_tracks", "scripted_log_replay"]
