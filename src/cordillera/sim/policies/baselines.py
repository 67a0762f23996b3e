"""Baseline driving policies (no model): constant velocity, route follower, log replay.

All three implement the :class:`cordillera.sim.types.Policy` protocol and return 10 Hz rig-frame
plans of ``HORIZON_STEPS`` poses after the origin (6.4 s, Alpamayo's horizon).
"""

from __future__ import annotations

import math

import numpy as np

from cordillera.sim.types import PLAN_PERIOD_US, Observation, Plan, Rollout, SessionInfo

__all__ = ["HORIZON_STEPS", "ConstantVelocityPolicy", "RouteFollowerPolicy", "LogReplayPolicy"]

HORIZON_STEPS = 64  # 6.4 s at 10 Hz, spec/alpamayo_model.md (future 64 poses)


def _times(t_now_us: int, n: int = HORIZON_STEPS) -> np.ndarray:
    return t_now_us + PLAN_PERIOD_US * np.arange(n + 1, dtype=np.int64)


def _arc_plan(t_now_us: int, speed_mps: float, yaw_rate_radps: float) -> Plan:
    """Constant speed and yaw rate from the rig origin."""
    t = _times(t_now_us)
    ts = (t - t_now_us) * 1e-6
    yaw = yaw_rate_radps * ts
    if abs(yaw_rate_radps) < 1e-6:
        x, y = speed_mps * ts, np.zeros_like(ts)
    else:
        rad = speed_mps / yaw_rate_radps
        x, y = rad * np.sin(yaw), rad * (1.0 - np.cos(yaw))
    return Plan(t_us=t, xyz_rig=np.stack([x, y, np.zeros_like(x)], -1), yaw_rig=yaw)


class ConstantVelocityPolicy:
    """Extrapolates the latest ego speed and yaw rate (a circular arc at constant speed)."""

    name = "constant_velocity"
    runs_inline = True  # bounded, in-process: no policy-timeout worker thread (sim/runtime.py)

    def start(self, session: SessionInfo) -> None:
        pass

    def plan(self, observation: Observation, t_now_us: int, t_query_us: int) -> Plan:
        h = observation.ego_history
        v = float(max(h.velocity_rig_mps[-1, 0], 0.0))
        return _arc_plan(t_now_us, v, float(h.yaw_rate_radps[-1]))

    def close(self) -> None:
        pass


class RouteFollowerPolicy:
    """Drives along the observation's route waypoints at the speed limit, blind to everything else.

    Speed profile: from the current speed towards ``speed_limit_mps`` at ``accel_mps2`` (or down at
    ``decel_mps2``), capped so that it can stop at the end of the visible route. Path: the rig
    origin, then the route waypoints more than ``min_waypoint_ahead_m`` ahead (the first one is the
    ego's projection on the route, too close to steer at), extended straight past the last one."""

    name = "route_follower"
    runs_inline = True  # bounded, in-process: no policy-timeout worker thread (sim/runtime.py)

    def __init__(self, speed_limit_mps: float = 13.9, accel_mps2: float = 1.5, decel_mps2: float = 2.0,
                 min_waypoint_ahead_m: float = 4.0):
        if speed_limit_mps <= 0:
            raise ValueError(f"speed_limit_mps must be > 0, got {speed_limit_mps}")
        self.speed_limit_mps = speed_limit_mps
        self.accel_mps2 = accel_mps2
        self.decel_mps2 = decel_mps2
        self.min_waypoint_ahead_m = min_waypoint_ahead_m

    def start(self, session: SessionInfo) -> None:
        pass

    def plan(self, observation: Observation, t_now_us: int, t_query_us: int) -> Plan:
        wp = np.asarray(observation.route_rig, dtype=np.float64)[:, :2]
        wp = wp[np.all(np.isfinite(wp), axis=1)]
        wp = wp[wp[:, 0] > self.min_waypoint_ahead_m] if len(wp) else wp
        v0 = float(max(observation.ego_history.velocity_rig_mps[-1, 0], 0.0))
        if len(wp) == 0:  # no route ahead: stop straight ahead
            path = np.array([[0.0, 0.0], [1.0, 0.0]])
            route_len = 0.0
        else:
            path = np.concatenate([[[0.0, 0.0]], wp])
            route_len = float(np.sum(np.hypot(*np.diff(path, axis=0).T)))
        # speed profile (forward integration at 10 Hz, stopping at the route end)
        t = _times(t_now_us)
        dt = PLAN_PERIOD_US * 1e-6
        s = np.zeros(len(t))
        v = v0
        for k in range(1, len(t)):
            v_stop = math.sqrt(max(2.0 * self.decel_mps2 * (route_len - s[k - 1]), 0.0))
            target = min(self.speed_limit_mps, v_stop)
            v_new = min(v + self.accel_mps2 * dt, target) if v < target else max(v - self.decel_mps2 * dt, target)
            s[k] = min(s[k - 1] + 0.5 * (v + v_new) * dt, route_len) if route_len > 0 else s[k - 1]
            v = v_new
        xy, yaw = _along(path, s)
        return Plan(t_us=t, xyz_rig=np.concatenate([xy, np.zeros((len(t), 1))], -1), yaw_rig=yaw)

    def close(self) -> None:
        pass


def _along(path: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points and headings at arc lengths ``s`` along a polyline (extended past its end)."""
    seg = np.diff(path, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    keep = seg_len > 1e-6
    seg, seg_len = seg[keep], seg_len[keep]
    starts = np.concatenate([[0.0], np.cumsum(seg_len)])[:-1]
    heading = np.arctan2(seg[:, 1], seg[:, 0])
    i = np.clip(np.searchsorted(starts, s, side="right") - 1, 0, len(seg) - 1)
    u = s - starts[i]
    base = path[:-1][keep][i]
    xy = base + u[:, None] * np.stack([np.cos(heading[i]), np.sin(heading[i])], -1)
    yaw = np.unwrap(heading[i])
    yaw[0] = 0.0  # the plan starts at the current pose and heading
    return xy, yaw


class LogReplayPolicy:
    """Replays a reference rollout's ego trajectory, expressed in the current rig frame.

    Pose 0 is the current ego pose (as AlpaSim's driver returns); poses 1..N are the reference at
    t + 0.1 s, ... (clipped to the reference's time range, then held at constant velocity so that
    the plan always covers ≥ 2 s)."""

    name = "log_replay"
    runs_inline = True  # bounded, in-process: no policy-timeout worker thread (sim/runtime.py)

    def __init__(self, reference: Rollout):
        if not reference.steps:
            raise ValueError("LogReplayPolicy needs a reference rollout with steps")
        self.reference = reference
        self._t = reference.t_us()
        ego = reference.ego_xy_yaw()
        self._x, self._y = ego[:, 0], ego[:, 1]
        self._yaw = np.unwrap(ego[:, 2])

    def start(self, session: SessionInfo) -> None:
        pass

    def plan(self, observation: Observation, t_now_us: int, t_query_us: int) -> Plan:
        t = _times(t_now_us)
        tq = t[1:].astype(np.float64)
        t_ref = self._t
        x = np.interp(tq, t_ref, self._x)
        y = np.interp(tq, t_ref, self._y)
        yaw = np.interp(tq, t_ref, self._yaw)
        beyond = tq > t_ref[-1]
        if np.any(beyond) and len(t_ref) >= 2:  # hold the last reference velocity
            dt_ref = (t_ref[-1] - t_ref[-2]) * 1e-6
            vx, vy = (self._x[-1] - self._x[-2]) / dt_ref, (self._y[-1] - self._y[-2]) / dt_ref
            extra = (tq[beyond] - t_ref[-1]) * 1e-6
            x[beyond] = self._x[-1] + vx * extra
            y[beyond] = self._y[-1] + vy * extra
        h = observation.ego_history
        ex, ey = h.xyz_local[-1, 0], h.xyz_local[-1, 1]
        qz, qw = h.quat_local[-1, 2], h.quat_local[-1, 3]
        eyaw = 2.0 * math.atan2(qz, qw)
        c, s = math.cos(eyaw), math.sin(eyaw)
        dx, dy = x - ex, y - ey
        xyz = np.zeros((len(t), 3))
        xyz[1:, 0] = c * dx + s * dy
        xyz[1:, 1] = -s * dx + c * dy
        yaw_rig = np.zeros(len(t))
        rel = np.unwrap(yaw - eyaw)
        yaw_rig[1:] = rel - 2 * np.pi * np.round(rel[0] / (2 * np.pi))  # first relative yaw in [-π, π]
        return Plan(t_us=t, xyz_rig=xyz, yaw_rig=yaw_rig)

    def close(self) -> None:
        pass
