"""Small hand-built scenarios for the SIM CORE tests (straight roads, a light, a crosswalk)."""

import numpy as np

from cordillera.world.map import Lane, RoadMap, StopLine
from cordillera.world.scenario import ActorSpec, EgoSpec, Scenario, SignalProgram, TrafficLight


def straight_map(length_m=400.0, n_lanes=1, width_m=3.6, speed_limit_mps=13.9, stop_line_s=None):
    """Lanes L0 (rightmost, y = 0), L1 (y = 3.6), ... along +x from x = 0."""
    lanes = {}
    for k in range(n_lanes):
        y = k * width_m
        lanes[f"L{k}"] = Lane(
            f"L{k}",
            np.array([[0.0, y], [length_m, y]]),
            width_m=width_m,
            speed_limit_mps=speed_limit_mps,
            left_marking="dashed_white" if k < n_lanes - 1 else "solid_yellow",
            right_marking="dashed_white" if k > 0 else "solid_white",
            left_neighbor=f"L{k + 1}" if k < n_lanes - 1 else None,
            right_neighbor=f"L{k - 1}" if k > 0 else None,
        )
    stop_lines = ()
    if stop_line_s is not None:
        stop_lines = (StopLine("S0", "L0", stop_line_s, np.array([[stop_line_s, -1.8], [stop_line_s, 1.8]])),)
    return RoadMap(lanes=lanes, stop_lines=stop_lines)


def scenario(actors=(), n_lanes=1, ego_x=10.0, ego_speed=10.0, duration_us=20_000_000, lights=(),
             stop_line_s=None, force_gt_us=1_700_000, length_m=400.0, **kw):
    m = straight_map(length_m=length_m, n_lanes=n_lanes, stop_line_s=stop_line_s)
    ego = EgoSpec(x_m=ego_x, y_m=0.0, yaw_rad=0.0, speed_mps=ego_speed, route_lane_ids=("L0",))
    return Scenario(id="hand", family="hand", category="nominal", seed=0, params={}, map=m, ego=ego,
                    actors=tuple(actors), traffic_lights=tuple(lights), duration_us=duration_us,
                    force_gt_duration_us=force_gt_us, **kw)


def red_light(stop_line_s=100.0):
    return TrafficLight("TL0", stop_line_s + 5, -3.0, 5.0, np.pi, ("L0",), "S0",
                        SignalProgram(phases=(("red", 10_000_000),), mode="stuck_red"))


def car(id_, x, lane="L0", y=0.0, speed=10.0, **behavior_kw):
    from cordillera.world.scenario import IdmBehavior

    return ActorSpec(id=id_, kind="car", x_m=x, y_m=y, yaw_rad=0.0, speed_mps=speed,
                     behavior=IdmBehavior(route_lane_ids=(lane,), **behavior_kw))
