"""The rule labeler on expert rollouts of the scenario families (world.generator + sim.runtime)."""

import functools

import pytest

from cordillera.reasoning.labeler import actor_visible_at, label_rollout, leakage_violations
from cordillera.reasoning.schema import VEHICLE_KINDS, parse
from cordillera.sim.expert import ExpertPolicy
from cordillera.sim.runtime import run_rollout
from cordillera.world import generator
from cordillera.world.families import construction_zone, jaywalker, traffic_light


@functools.lru_cache(maxsize=None)
def expert_rollout(family: str, seed: int, variant: str | None = None):
    params = None
    if variant == "default":
        params = jaywalker.Params()
    elif variant is not None:
        params = {"traffic_light": traffic_light.Params, "construction_zone": construction_zone.Params}[family](
            variant=variant)
    sc = generator.make(family, seed, params=params)
    ro = run_rollout(sc, ExpertPolicy(), seed=seed)
    assert not ro.failed, ro.error
    return sc, ro


def test_traffic_light_stops_for_the_red_light_at_its_keyframe():
    sc, ro = expert_rollout("traffic_light", 0, "turns_red")
    red = next(h for h in sc.hazards if h.kind == "red_light")
    events = {e.event_start_timestamp_us: e for e in label_rollout(ro, sc, seed=0)}
    assert red.t_us in events, (red.t_us, sorted(events))
    ev = events[red.t_us]
    r = parse(ev.cot)
    assert ev.keyframe_kind == "hazard"
    assert r.longitudinal == "Stop" and [s.colour for s in r.signals] == ["red"], ev.cot
    assert "red" in ev.cot and ("light" in ev.cot or "signal" in ev.cot)
    # before the light turns (still green/yellow at t0) no label may say red
    for t, e in events.items():
        if t < red.t_us:
            assert "red" not in e.cot, e.cot


def test_jaywalker_names_the_pedestrian():
    sc, ro = expert_rollout("jaywalker", 0, "default")
    hz = next(h for h in sc.hazards if h.kind == "jaywalker")
    events = label_rollout(ro, sc, seed=0)
    ev = next(e for e in events if e.event_start_timestamp_us == hz.t_us)
    r = parse(ev.cot)
    assert r.longitudinal in ("Yield", "Stop"), ev.cot
    assert "pedestrian" in [o.kind for o in r.objects], ev.cot
    assert ev.record.objects[0].id == "jaywalker"


def test_construction_zone_nudges_around_the_cones():
    sc, ro = expert_rollout("construction_zone", 0, "narrowing")
    events = label_rollout(ro, sc, seed=0)
    nudges = [e for e in events if e.record.lateral == "Nudge"]
    assert nudges, [e.cot for e in events]
    for e in nudges:
        r = parse(e.cot)
        assert (r.lateral, r.lateral_direction) == ("Nudge", "left"), e.cot
        assert {"cone", "barrier"} & {o.kind for o in r.objects} or "construction_zone" in r.road_events, e.cot
    # the speed side: the expert slows to the zone speed (Adapt Speed), or waits for the oncoming
    # car to clear the narrowed stretch before it departs (Gap-search: this seed's oncoming car
    # meets the ego inside the zone), never speeds up past the zone speed
    assert {e.record.longitudinal for e in nudges} <= {"Adapt Speed", "Stop", "Yield", "Resume Speed", "Keep Distance",
                                                      "Gap-search"}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(generator.FAMILIES))
def test_no_label_mentions_an_object_unseen_at_t0(family):
    """Across every family: every named object is visible (appear_us <= t0, visible, in view) at
    t0, every light colour is the colour at t0, and the text names no object kind that only
    something unseen at t0 could justify."""
    sc, ro = expert_rollout(family, 1000)
    index = {s.t_us: s for s in ro.steps}
    for ev in label_rollout(ro, sc, seed=0):
        t0 = ev.event_start_timestamp_us
        step = index[t0]
        assert leakage_violations(ev.record, sc, step, t0) == [], ev.cot
        for o in ev.record.objects:
            spec = sc.actor(o.id)
            assert spec.appear_us <= t0 and step.actors[o.id].visible
        seen = {sc.actor(a.id).kind for a in sc.actors if actor_visible_at(sc, step, a.id, t0)}
        unseen_only = {a.kind for a in sc.actors if not actor_visible_at(sc, step, a.id, t0)} - seen
        for o in parse(ev.cot).objects:
            k = o.kind
            if k in VEHICLE_KINDS:
                assert k not in unseen_only or k == "vehicle", (k, ev.cot)
            else:
                assert k in seen or k not in unseen_only, (k, ev.cot)
        for s in ev.record.signals:
            if s.kind == "traffic_light":
                assert step.signals[s.id] == s.colour
