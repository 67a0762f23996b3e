"""Rule labeler on a hand-made rollout: keyframe, decision, visibility rules, file format, check CLI."""

import numpy as np
import pytest

from cordillera.reasoning.cli import check_events, main_check
from cordillera.reasoning.labeler import (
    CocEvent,
    actor_visible_at,
    build_record,
    label_rollout,
    leakage_violations,
    read_reasoning_parquet,
    write_reasoning_parquet,
)
from cordillera.reasoning.schema import CocRecord, CriticalObject, SignalCue, parse
from cordillera.sim.types import Plan, Rollout, StepRecord
from cordillera.world.map import Lane, RoadMap, StopLine
from cordillera.world.scenario import (
    ActorSpec,
    AgentState,
    EgoSpec,
    Hazard,
    Scenario,
    SignalProgram,
    TrafficLight,
    WalkerBehavior,
)

T_RED = 4_000_000


def make_scenario():
    lane = Lane("l0", np.array([[-50.0, 0.0], [300.0, 0.0]]))
    m = RoadMap({"l0": lane}, stop_lines=(StopLine("s0", "l0", 120.0, np.array([[70, -1.8], [70, 1.8]])),))
    actors = (
        ActorSpec("ped", "pedestrian", 60.0, -6.0, np.pi / 2, 0.0,
                  behavior=WalkerBehavior(((60.0, -6.0), (60.0, 6.0)), start_us=30_000_000)),
        ActorSpec("late_ped", "pedestrian", 90.0, -5.0, np.pi / 2, 0.0, appear_us=10_000_000),
        ActorSpec("behind", "truck", -20.0, 0.0, 0.0, 10.0),
        ActorSpec("far", "bus", 250.0, 0.0, 0.0, 0.0),
    )
    light = TrafficLight("tl0", 72.0, -3.0, 5.0, np.pi, ("l0",), "s0",
                         SignalProgram(phases=(("green", 3_000_000), ("yellow", 1_000_000), ("red", 30_000_000))))
    return Scenario(id="clip-a", family="test", category="nominal", seed=1, params={}, map=m,
                    ego=EgoSpec(0.0, 0.0, 0.0, 10.0, ("l0",)), actors=actors, traffic_lights=(light,),
                    hazards=(Hazard(T_RED, "red_light", "tl0"),))


def _plan(t_us, decisions):
    t = t_us + np.arange(65, dtype=np.int64) * 100_000
    return Plan(t, np.zeros((65, 3)), np.zeros(65), decisions=decisions)


def make_rollout(sc):
    """Ego cruises at 10 m/s, brakes at 2 m/s² from the red light (4 s) to a stop, stands."""
    steps = []
    x, v = 0.0, 10.0
    for k in range(201):
        t = k * 100_000
        ego = AgentState(x, 0.0, 0.0, v, -2.0 if t >= T_RED and v > 0 else 0.0)
        actors = {
            "ped": AgentState(60.0, -6.0, np.pi / 2, 0.0),
            "late_ped": AgentState(90.0, -5.0, np.pi / 2, 0.0, visible=t >= 10_000_000),
            "behind": AgentState(x - 20.0, 0.0, 0.0, v),
            "far": AgentState(250.0, 0.0, 0.0, 0.0),
        }
        signals = {"tl0": sc.traffic_lights[0].program.state_at(t)}
        if t >= T_RED:
            dec = {"longitudinal": "Stop", "lateral": "Keep Lane", "lateral_direction": None, "causal_object": None,
                   "signal": {"id": "tl0", "state": signals["tl0"]}, "stop_line_distance_m": 66.0 - x}
        else:
            dec = {"longitudinal": "Resume Speed", "lateral": "Keep Lane", "lateral_direction": None,
                   "causal_object": None, "signal": {"id": "tl0", "state": signals["tl0"]},
                   "stop_line_distance_m": 66.0 - x}
        steps.append(StepRecord(t, ego, actors, signals, plan=_plan(t, dec)))
        if t >= T_RED:
            v = max(v - 0.2, 0.0)
        x += v * 0.1
    return Rollout("clip-a", "r0", "expert", 0, steps)


@pytest.fixture(scope="module")
def sc_ro():
    sc = make_scenario()
    return sc, make_rollout(sc)


def test_label_rollout_stops_for_the_red_light_at_the_hazard_keyframe(sc_ro):
    sc, ro = sc_ro
    events = label_rollout(ro, sc, seed=0)
    red = [e for e in events if e.event_start_timestamp_us == T_RED]
    assert len(red) == 1 and red[0].keyframe_kind == "hazard"
    r = parse(red[0].cot)
    assert r.longitudinal == "Stop" and [s.colour for s in r.signals] == ["red"], red[0].cot
    assert red[0].record.stop_line_distance_m == pytest.approx(26.0, abs=0.5)
    assert all(1_600_000 <= e.event_start_timestamp_us <= 13_600_000 for e in events)
    # different seeds phrase differently but say the same thing
    texts = {label_rollout(ro, sc, seed=s)[0].cot for s in range(8)}
    assert len(texts) >= 3


def test_light_colour_is_the_colour_at_t0(sc_ro):
    sc, ro = sc_ro
    step = ro.steps[35]  # 3.5 s: yellow now, red from 4.0 s
    dec = {"longitudinal": "Stop", "lateral": "Keep Lane", "signal": {"id": "tl0", "state": "red"}}
    rec = build_record(sc, step, dec, 3_500_000)
    assert [s.colour for s in rec.signals] == ["yellow"]
    assert leakage_violations(rec.with_(signals=(SignalCue("traffic_light", "red", "tl0"),)), sc, step, 3_500_000)


@pytest.mark.parametrize("actor_id,named", [
    ("ped", True),  # visible, 60 m ahead at 45°... within the camera coverage
    ("late_ped", False),  # appears at 10 s: after t0
    ("behind", False),  # outside the camera field of view
    ("far", False),  # beyond perception range at t0
])
def test_objects_named_only_if_visible_at_t0(sc_ro, actor_id, named):
    sc, ro = sc_ro
    t0 = 4_000_000
    step = ro.steps[40]
    dec = {"longitudinal": "Yield", "lateral": "Keep Lane",
           "causal_object": {"id": actor_id, "kind": sc.actor(actor_id).kind, "relation": "crossing", "distance_m": 10.0}}
    rec = build_record(sc, step, dec, t0)
    assert (actor_id in [o.id for o in rec.objects]) == named
    assert actor_visible_at(sc, step, actor_id, t0) == named
    assert leakage_violations(rec, sc, step, t0) == []


def test_leakage_violations_catch_a_future_object(sc_ro):
    sc, ro = sc_ro
    step = ro.steps[40]
    bad = CocRecord("Yield", "Keep Lane", objects=(CriticalObject("pedestrian", "crossing", id="late_ped"),))
    assert any("late_ped" in v for v in leakage_violations(bad, sc, step, 4_000_000))
    # the same object is fine once it has appeared (and the flag is per t0, not per clip)
    assert leakage_violations(bad, sc, ro.steps[120], 12_000_000) == []


def test_failed_rollout_is_refused(sc_ro):
    sc, ro = sc_ro
    failed = Rollout("clip-a", "r1", "expert", 0, ro.steps, status="failed", error="boom")
    with pytest.raises(ValueError, match="failed"):
        label_rollout(failed, sc)


def test_reasoning_parquet_round_trip_and_check(tmp_path, sc_ro):
    sc, ro = sc_ro
    events = label_rollout(ro, sc, seed=1)
    by_clip = {"clip-a": events, "clip-b": [{"event_start_timestamp": 5_100_000, "cot": "Yield to the pedestrian."}]}
    p = tmp_path / "reasoning" / "ood_reasoning.parquet"
    p.parent.mkdir()
    write_reasoning_parquet(by_clip, p)
    back = read_reasoning_parquet(p)
    assert list(back) == ["clip-a", "clip-b"]
    assert back["clip-a"] == [{"event_start_timestamp": e.event_start_timestamp_us, "cot": e.cot} for e in events]
    import pyarrow.parquet as pq

    schema = pq.read_schema(p)
    assert "clip_id" in schema.names and "events" in schema.names
    assert str(schema.field("events").type) == "list<element: struct<event_start_timestamp: int64, cot: string>>"
    stats = main_check(tmp_path)  # a directory with reasoning/ood_reasoning.parquet
    assert stats["clips"] == 2 and stats["events"] == len(events) + 1
    assert stats["longitudinal"]["Yield"] >= 1 and stats["leakage_flags"] == []


def test_check_flags_hedging_words_and_window():
    stats = check_events({"c": [{"event_start_timestamp": 500_000, "cot": "Stop since the car will likely cut in."},
                                {"event_start_timestamp": 5_000_000, "cot": "Slow down, then turn left."}]})
    assert len(stats["leakage_flags"]) == 2 and stats["t0_out_of_window"] == [("c", 500_000)]
    assert stats["longitudinal"] == {"Stop": 1, "Adapt Speed": 1}


def test_coc_event_fields():
    e = CocEvent(5_100_000, "Stop.", CocRecord("Stop"), "hazard")
    assert e.event_start_timestamp_us == 5_100_000 and e.record.longitudinal == "Stop"
