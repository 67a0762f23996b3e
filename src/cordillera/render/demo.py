"""Hand-built test scenes for the renderer (independent of the world families) and the
``docs/img`` picture generator: ``python -m cordillera.render.demo docs/img``.

The demo road runs along +x: ego lanes ``f0`` (y = −1.8) and ``f1`` (y = −5.4) drive +x, lane
``b0`` (y = +1.8) drives −x; kerbs at y = −7.8 and y = +4.2. The ego rig origin is at x = 0 on
lane ``f0``; the front cameras sit 1.75 m ahead of it, so "d m ahead of the camera" is
x = 1.75 + d.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from cordillera.world.map import Crosswalk, Lane, RoadEdge, RoadMap, Sign, StopLine
from cordillera.world.scenario import (
    ActorSpec, AgentState, Conditions, EgoSpec, Scenario, SignalProgram, TrafficLight, WorldState,
)

__all__ = ["CAMERA_X_M", "demo_scenario", "initial_world_state", "main"]

CAMERA_X_M = 1.75  # [m] front cameras ahead of the rig origin (rig.CAMERA_MOUNTS)


def demo_scenario(
    light_distance_m: float | None = 40.0,
    light_state: str = "red",
    ped_distance_m: float | None = 15.0,
    conditions: Conditions = Conditions(),
    traffic: bool = True,
    actors: tuple[ActorSpec, ...] = (),
    light_xyz: tuple[float, float, float] | None = None,
    scenario_id: str = "render_demo",
) -> Scenario:
    """A straight urban road with a signalised crossing ``light_distance_m`` ahead of the front
    camera (head on a pole at the right kerb, 5 m high) and a pedestrian on a mid-block
    crosswalk ``ped_distance_m`` ahead."""
    x0, x1 = -80.0, 260.0
    xs = np.linspace(x0, x1, 18)

    def lane(lid, y, fwd, left, right, **kw):
        pts = np.column_stack([xs, np.full_like(xs, y)])
        return Lane(lid, pts if fwd else pts[::-1], left_marking=left, right_marking=right, **kw)

    lanes = {
        "f0": lane("f0", -1.8, True, "double_yellow", "dashed_white", right_neighbor="f1"),
        "f1": lane("f1", -5.4, True, "dashed_white", "solid_white", left_neighbor="f0"),
        "b0": lane("b0", 1.8, False, "double_yellow", "solid_white"),
    }
    edges = (RoadEdge("edge_r", np.array([[x0, -7.8], [x1, -7.8]])), RoadEdge("edge_l", np.array([[x0, 4.2], [x1, 4.2]])))
    crosswalks, stop_lines, lights, signs = [], [], [], []
    if ped_distance_m is not None:
        xc = CAMERA_X_M + ped_distance_m
        crosswalks.append(Crosswalk("cw_mid", np.array([[xc - 1.5, -7.2], [xc + 1.5, -7.2], [xc + 1.5, 3.6], [xc - 1.5, 3.6]])))
    if light_distance_m is not None:
        xl = CAMERA_X_M + light_distance_m
        xs_line = xl - 6.0
        stop_lines.append(StopLine("stop_f", "f0", xs_line - x0, np.array([[xs_line, -7.2], [xs_line, 0.0]])))
        crosswalks.append(Crosswalk("cw_light", np.array([[xs_line + 1, -7.2], [xs_line + 4, -7.2], [xs_line + 4, 3.6],
                                                           [xs_line + 1, 3.6]])))
        prog = SignalProgram(phases=((light_state, 10**9),)) if light_state in ("red", "yellow", "green") else \
            SignalProgram(mode={"dark": "dark", "flashing_yellow": "flashing_yellow",
                                "flashing_red": "flashing_red"}[light_state])
        lx, ly, lz = light_xyz if light_xyz is not None else (xl, -8.8, 5.0)
        lights.append(TrafficLight("light_f", lx, ly, lz, math.pi, ("f0", "f1"), "stop_f", prog))
    signs.append(Sign("sign_speed", "speed_limit", CAMERA_X_M + 22.0, -9.0, math.pi, value=50.0))
    signs.append(Sign("sign_work", "construction", CAMERA_X_M + 70.0, -9.0, math.pi))
    signs.append(Sign("sign_stop_b", "stop", CAMERA_X_M + 30.0, 5.2, 0.0))
    road_map = RoadMap(lanes, tuple(crosswalks), tuple(stop_lines), edges, (), tuple(signs))

    acts = list(actors)
    if ped_distance_m is not None:
        acts.append(ActorSpec("ped_1", "pedestrian", CAMERA_X_M + ped_distance_m, -2.6, math.pi / 2, 1.4))
    if traffic:
        acts += [
            ActorSpec("car_lead", "car", 30.0, -5.4, 0.0, 8.0),
            ActorSpec("car_oncoming", "car", 55.0, 1.8, math.pi, 8.0),
            ActorSpec("bus_1", "bus", 95.0, 1.8, math.pi, 6.0),
            ActorSpec("truck_1", "truck", 70.0, -5.4, 0.0, 6.0),
            ActorSpec("bike_1", "cyclist", 12.0, -6.9, 0.0, 4.0),
            ActorSpec("cone_1", "cone", 8.0, -3.8, 0.0),
            ActorSpec("cone_2", "cone", 10.0, -3.8, 0.0),
            ActorSpec("barrier_1", "barrier", 14.0, 3.2, 0.0),
            ActorSpec("car_behind", "car", -12.0, -1.8, 0.0, 8.0),
        ]
    ego = EgoSpec(0.0, -1.8, 0.0, 8.0, ("f0",))
    return Scenario(scenario_id, "render_demo", "nominal", 0, {}, road_map, ego, tuple(acts), tuple(lights),
                    conditions, duration_us=10_000_000)


def initial_world_state(scenario: Scenario, t_us: int = 0) -> WorldState:
    """World state at ``t_us`` with every actor at its initial pose (no motion)."""
    e = scenario.ego
    ego = AgentState(e.x_m, e.y_m, e.yaw_rad, e.speed_mps)
    actors = {a.id: AgentState(a.x_m, a.y_m, a.yaw_rad, a.speed_mps, visible=t_us >= a.appear_us)
              for a in scenario.actors}
    signals = {tl.id: tl.program.state_at(t_us) for tl in scenario.traffic_lights}
    return WorldState(t_us, ego, actors, signals)


def _save_png(path: Path, img: np.ndarray) -> None:
    from cordillera.render.video import encode_png

    path.write_bytes(encode_png(img))


def main(out_dir: str = "docs/img", backend: str = "auto") -> list[Path]:
    """Write the docs pictures: front-wide day scene, night scene, 4-camera strip, BEV."""
    from cordillera.render import DEFAULT_MODEL_CAMERAS, make_renderer
    from cordillera.render.bev import render_bev

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    sc = demo_scenario()
    ws = initial_world_state(sc)
    r = make_renderer(sc, backend=backend)
    img = r.render(ws, "camera_front_wide_120fov", -33_333, 0)
    _save_png(out / "render_front_wide_red_light_40m_ped_15m.png", img)
    written.append(out / "render_front_wide_red_light_40m_ped_15m.png")
    strip = np.concatenate([r.render(ws, c, -33_333, 0) for c in DEFAULT_MODEL_CAMERAS], axis=1)
    import cv2

    strip = cv2.resize(strip, (strip.shape[1] // 2, strip.shape[0] // 2), interpolation=cv2.INTER_AREA)
    _save_png(out / "render_4cam_strip.png", strip)
    written.append(out / "render_4cam_strip.png")
    bev = render_bev(sc, ws, plan_rig=np.column_stack([np.linspace(0, 30, 31), np.zeros(31), np.zeros(31)]),
                     route_xy=sc.route_polyline_xy())
    _save_png(out / "render_bev.png", bev)
    written.append(out / "render_bev.png")
    # 3x zoom (nearest) of the region around the light and the pedestrian, to check them by eye.
    zoom = cv2.resize(img[110:200, 250:370], None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    _save_png(out / "render_front_wide_zoom_light_ped.png", zoom)
    written.append(out / "render_front_wide_zoom_light_ped.png")
    sc_n = demo_scenario(conditions=Conditions(time_of_day="night"), light_state="green")
    rn = make_renderer(sc_n, backend=backend)
    _save_png(out / "render_front_wide_night.png", rn.render(initial_world_state(sc_n), "camera_front_wide_120fov", -33_333, 0))
    written.append(out / "render_front_wide_night.png")
    try:
        from cordillera.world.generator import make
    except ImportError:  # the world families are optional for these pictures
        return written
    from cordillera.render.rig import default_rig

    tiles = []
    rig = default_rig(["camera_front_wide_120fov"])
    for fam in ("traffic_light", "pedestrian_crosswalk", "construction_zone", "unprotected_left_turn",
                "merge_on_ramp", "debris_in_lane"):
        fsc = make(fam, 3000)
        t = 3_000_000
        tile = make_renderer(fsc, rig, backend=backend).render(initial_world_state(fsc, t), "camera_front_wide_120fov",
                                                               t - 33_333, t)
        tile = cv2.resize(tile, (288, 160), interpolation=cv2.INTER_AREA)
        cv2.putText(tile, f"{fam} ({fsc.conditions.time_of_day}, {fsc.conditions.weather})", (5, 14),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    grid = np.concatenate([np.concatenate(tiles[i:i + 2], axis=1) for i in range(0, len(tiles), 2)], axis=0)
    _save_png(out / "render_families.png", grid)
    written.append(out / "render_families.png")
    return written


if __name__ == "__main__":
    for p in main(*sys.argv[1:]):
        print(p)
