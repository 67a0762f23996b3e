"""Contracts of world/map.py and world/scenario.py: lane interface, signals, JSON round trips."""

import json

import numpy as np
import pytest

from cordillera.world.map import Lane, RoadMap, StopLine
from cordillera.world.scenario import (
    ActorSpec, BrakeEvent, EgoSpec, Hazard, IdmBehavior, LogBehavior, Scenario, SignalProgram,
    TrafficLight, WalkerBehavior,
)


def arc_lane(radius=50.0, n=200):
    a = np.linspace(0, np.pi / 2, n)
    return Lane("arc", np.stack([radius * np.sin(a), radius * (1 - np.cos(a))], 1))


def test_straight_lane_four_methods_hand_values():
    lane = Lane("a", np.array([[0.0, 0.0], [100.0, 0.0]]), width_m=3.5)
    assert np.allclose(lane.position(30.0, 1.5), [30.0, 1.5])
    s, r = lane.to_frenet(np.array([[42.0, -1.0], [-5.0, 2.0], [110.0, 0.0]]))
    assert np.allclose(s, [42.0, -5.0, 110.0]) and np.allclose(r, [-1.0, 2.0, 0.0])
    assert lane.heading_at(10.0) == pytest.approx(0.0)
    assert lane.width_at(10.0) == pytest.approx(3.5)
    assert lane.length_m == pytest.approx(100.0)


def test_arc_lane_frenet_round_trip_and_heading():
    lane = arc_lane()
    s = np.linspace(1, lane.length_m - 1, 25)
    r = np.linspace(-1.5, 1.5, 25)
    s2, r2 = lane.to_frenet(lane.position(s, r))
    assert np.abs(s2 - s).max() < 0.05 and np.abs(r2 - r).max() < 0.02
    # Quarter circle of radius 50: length ≈ 25π, heading at the end ≈ +90° (turning left).
    assert lane.length_m == pytest.approx(25 * np.pi, rel=1e-3)
    assert lane.heading_at(lane.length_m - 0.01) == pytest.approx(np.pi / 2, abs=0.01)
    # Left of a left-turning arc is towards the centre (0, 50).
    p = lane.position(lane.length_m / 2, 2.0)
    assert np.linalg.norm(p - [0, 50]) == pytest.approx(48.0, abs=0.05)


def test_lane_validation():
    with pytest.raises(ValueError, match="polyline"):
        Lane("x", np.zeros((1, 2)))
    with pytest.raises(ValueError, match="NaN"):
        Lane("x", np.array([[0, 0], [np.nan, 1]]))
    with pytest.raises(ValueError, match="marking"):
        Lane("x", np.array([[0, 0], [1, 0]]), left_marking="zigzag")
    with pytest.raises(ValueError, match="unknown lane"):
        RoadMap({"a": Lane("a", np.array([[0, 0], [1, 0]]), successors=("b",))})


def test_signal_program_cycle_and_faults():
    p = SignalProgram(phases=(("green", 5_000_000), ("yellow", 2_000_000), ("red", 3_000_000)), offset_us=0)
    assert [p.state_at(t) for t in (0, 4_999_999, 5_000_000, 7_000_000, 10_000_000)] == [
        "green", "green", "yellow", "red", "green"]
    assert p.next_change_us(6_000_000) == 7_000_000
    dark = SignalProgram(mode="dark", fault_start_us=2_000_000)
    assert dark.state_at(1_000_000) == "green" and dark.state_at(2_000_000) == "dark"
    assert SignalProgram(mode="flashing_red").state_at(123) == "flashing_red"
    with pytest.raises(ValueError):
        SignalProgram(phases=(("blue", 1),))


def make_scenario():
    lane = Lane("l0", np.array([[0.0, 0.0], [200.0, 0.0]]))
    m = RoadMap({"l0": lane}, stop_lines=(StopLine("s0", "l0", 100.0, np.array([[100, -1.8], [100, 1.8]])),))
    actors = (
        ActorSpec("lead", "car", 30.0, 0.0, 0.0, 8.0,
                  behavior=IdmBehavior(("l0",), brake_events=(BrakeEvent(5_000_000, 6.0),))),
        ActorSpec("ped", "pedestrian", 60.0, -6.0, np.pi / 2, 1.4,
                  behavior=WalkerBehavior(((60.0, -6.0), (60.0, 6.0)), start_us=2_000_000)),
        ActorSpec("cone", "cone", 80.0, 1.0, 0.0),
        ActorSpec("log", "car", 10.0, 3.5, 0.0, behavior=LogBehavior((0, 1_000_000), ((10, 3.5), (20, 3.5)), (0.0, 0.0))),
    )
    return Scenario(
        id="t-1", family="test", category="nominal", seed=1, params={"a": 1}, map=m,
        ego=EgoSpec(0.0, 0.0, 0.0, 10.0, ("l0",)), actors=actors,
        traffic_lights=(TrafficLight("tl0", 102.0, -3.0, 5.0, np.pi, ("l0",), "s0"),),
        hazards=(Hazard(5_000_000, "lead_braking", "lead"),),
    )


def test_scenario_json_round_trip_is_lossless():
    s = make_scenario()
    s2 = Scenario.from_json(s.to_json())
    assert s2.to_json() == s.to_json()
    assert s2.actors[0].behavior.brake_events[0].decel_mps2 == 6.0
    assert s2.actor("cone").length_m == pytest.approx(0.4)


def test_scenario_malformed_json_names_the_problem(tmp_path):
    d = json.loads(make_scenario().to_json())
    del d["ego"]
    with pytest.raises(ValueError, match="ego"):
        Scenario.from_dict(d)
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        Scenario.load(p)
    d = json.loads(make_scenario().to_json())
    d["duration_us"] = 123
    with pytest.raises(ValueError, match="multiple"):
        Scenario.from_dict(d)
