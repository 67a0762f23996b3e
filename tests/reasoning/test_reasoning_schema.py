"""CoC schema: compose -> parse round trips, parser strictness, released-style sentences, diversity."""

import itertools
from collections import defaultdict

import numpy as np
import pytest

from cordillera.reasoning.labeler import phrase
from cordillera.reasoning.schema import (
    DIRECTED_LATERAL,
    DIRECTIONS,
    LATERAL,
    LONGITUDINAL,
    ROAD_EVENTS,
    CocRecord,
    CriticalObject,
    SignalCue,
    compose,
    parse,
    structured_tail,
)

KINDS = ("car", "truck", "bus", "cyclist", "pedestrian", "cone", "barrier", "debris", "parked_car", "animal")
RELATIONS = ("lead", "crossing", "oncoming", "cut_in_left", "cut_in_right", "merging", "blocking", "ahead", "left",
             "right")
STATES = ("moving", "stopped", "braking", "crossing", "parked", "static", "slow")


def random_record(rng: np.random.Generator) -> CocRecord:
    lon = rng.choice([*LONGITUDINAL, None])
    lat = rng.choice([*LATERAL, None])
    if lon is None and lat is None:
        lon = "Stop"
    d = str(rng.choice(DIRECTIONS)) if lat in DIRECTED_LATERAL else None
    objs = ()
    if rng.random() < 0.6:
        objs = (CriticalObject(str(rng.choice(KINDS)), str(rng.choice(RELATIONS)), str(rng.choice(STATES))),)
    u = rng.random()
    sigs = ()
    if u < 0.3:
        sigs = (SignalCue("traffic_light", str(rng.choice(["red", "yellow", "green", "dark", "flashing_red"]))),)
    elif u < 0.4:
        sigs = (SignalCue("stop_sign"),)
    ev = tuple(str(e) for e in rng.choice(list(ROAD_EVENTS), size=int(rng.integers(0, 3)), replace=False))
    return CocRecord(lon, lat, d, objs, sigs, ev, ("wet road",) if rng.random() < 0.2 else (),
                     f"turn {d} at the intersection" if lat == "Turn" else None)


def all_decision_combos():
    lats = [(None, None)] + [(lat, d) for lat in LATERAL for d in (DIRECTIONS if lat in DIRECTED_LATERAL else (None,))]
    for lon, (lat, d) in itertools.product([*LONGITUDINAL, None], lats):
        if lon is None and lat is None:
            continue
        yield lon, lat, d


@pytest.mark.parametrize("lon,lat,d", list(all_decision_combos()))
def test_compose_parse_round_trip_every_vocabulary_entry(lon, lat, d):
    rec = CocRecord(lon, lat, d, objects=(CriticalObject("car", "lead", "braking"),))
    for seed in range(12):  # every style and most synonyms
        text = compose(rec, seed, context="Busy road ahead with traffic" if seed % 3 == 0 else None)
        assert parse(text).decisions == (lon, lat, d), text
        text = phrase(rec, seed)
        assert parse(text).decisions == (lon, lat, d), text


def test_round_trip_random_records_through_the_phrasing_bank():
    rng = np.random.default_rng(0)
    for i in range(1500):
        rec = random_record(rng)
        text = phrase(rec, i)
        assert parse(text).decisions == rec.decisions, text


@pytest.mark.parametrize("text,expected", [
    ("Construction zone ahead with narrowing lanes and cones on right shoulder. Lateral decision: nudge left. "
     "Longitudinal decision: speed adaptation", ("Adapt Speed", "Nudge", "left")),
    ("Stop at the stop line since the light is red", ("Stop", None, None)),
    ("Yield to the pedestrian crossing ahead.", ("Yield", None, None)),
    ("Change to the left lane to overtake the slow truck.", ("Pass/Overtake", "Lane Change", "left")),
    ("Keep lane and maintain speed because the road ahead is clear.", ("Resume Speed", "Keep Lane", None)),
    ("Proceed through the intersection because the light turned green.", ("Resume Speed", None, None)),
    ("Follow the lead vehicle at a safe distance in dense traffic.", ("Keep Distance", None, None)),
    ("Make a right turn after giving way to the cyclist.", ("Yield", "Turn", "right")),
    ("Lateral decision: lane change right. Longitudinal decision: gap search", ("Gap-search", "Lane Change", "right")),
])
def test_parse_released_style_sentences(text, expected):
    assert parse(text).decisions == expected


def test_parse_components():
    r = parse("Stop at the stop line since the traffic light is red and a pedestrian is on the crosswalk.")
    assert [s.colour for s in r.signals] == ["red"]
    assert [o.kind for o in r.objects] == ["pedestrian"]
    assert {"stop_line", "crosswalk"} <= set(r.road_events)
    r = parse("Nudge right to pass the parked car on the left.")
    assert r.decisions == ("Pass/Overtake", "Nudge", "right") or r.decisions[1:] == ("Nudge", "right")
    assert [o.kind for o in r.objects] == ["parked_car"]  # "parked car" is not also a "car"


@pytest.mark.parametrize("text", [
    "Do a barrel roll over the cones.",
    "Lateral decision: wiggle left. Longitudinal decision: hover",
    "The stopped car ahead is waiting at the stop sign.",  # context words, no decision verb
    "A car turning left and a truck merging from the ramp.",  # other agents' manoeuvres
    "Shimmy sideways because the light is red.",
])
def test_parser_strict_unknown_decisions_give_none(text):
    r = parse(text)
    assert r.longitudinal is None and r.lateral is None, (text, r.decisions)


def test_parser_directed_lateral_without_direction_is_no_decision():
    r = parse("Lateral decision: lane change. Longitudinal decision: stop")
    assert r.decisions == ("Stop", None, None)
    assert parse("Nudge to give the cyclist room.").lateral is None


def test_structured_tail_and_record_validation():
    assert structured_tail(CocRecord("Adapt Speed", "Nudge", "left")) == \
        "Lateral decision: nudge left. Longitudinal decision: speed adaptation"
    with pytest.raises(ValueError, match="longitudinal"):
        CocRecord("Brake", None)
    with pytest.raises(ValueError, match="direction"):
        CocRecord("Stop", "Turn", "up")
    with pytest.raises(ValueError, match="no decision|without any decision"):
        compose(CocRecord(), 0)
    with pytest.raises(ValueError, match="needs a direction"):
        compose(CocRecord(None, "Turn", None), 0)


def test_from_decisions_tolerates_missing_and_unknown_keys():
    assert CocRecord.from_decisions(None).decisions == (None, None, None)
    assert CocRecord.from_decisions({"longitudinal": "Stop"}).decisions == ("Stop", None, None)
    assert CocRecord.from_decisions({"longitudinal": "Brake", "lateral": "Turn", "lateral_direction": "left"}
                                    ).decisions == (None, "Turn", "left")


def test_phrasing_diversity_1000_labels():
    """≥ 5 distinct phrasings per frequent decision in a 1 000-label sample, and the same
    situation is phrased ≥ 5 ways across seeds."""
    rng = np.random.default_rng(7)
    texts = defaultdict(set)
    counts = defaultdict(int)
    for i in range(1000):
        rec = random_record(rng)
        counts[rec.longitudinal] += 1
        texts[rec.longitudinal].add(phrase(rec, int(rng.integers(2**31))))
    frequent = [k for k, c in counts.items() if c >= 50]
    assert len(frequent) >= 6
    for k in frequent:
        assert len(texts[k]) >= 5, (k, len(texts[k]))
    for lon in LONGITUDINAL:  # one fixed situation per decision
        rec = CocRecord(lon, "Keep Lane", objects=(CriticalObject("car", "lead", "braking"),))
        same = {phrase(rec, s) for s in range(40)}
        assert len(same) >= 5, (lon, same)


def test_phrase_is_deterministic_per_seed():
    rec = CocRecord("Yield", "Keep Lane", objects=(CriticalObject("pedestrian", "crossing", "crossing"),))
    assert phrase(rec, 3) == phrase(rec, 3)
    assert "pedestrian" in phrase(rec, 3) or "person" in phrase(rec, 3)


@pytest.mark.parametrize("colour", ["red", "yellow", "green"])
def test_light_colour_survives_every_phrasing(colour):
    for lon in LONGITUDINAL:
        rec = CocRecord(lon, "Keep Lane", signals=(SignalCue("traffic_light", colour),))
        for seed in range(20):
            text = phrase(rec, seed)
            assert [s.colour for s in parse(text).signals] == [colour], text


def test_parse_reads_a_stated_stop_line_distance():
    assert parse("Stop at the stop line 25 m ahead since the light is red.").stop_line_distance_m == 25.0
    assert parse("Come to a stop 12.5 meters before the stop line.").stop_line_distance_m == 12.5
    assert parse("Stop at the stop line since the light is red.").stop_line_distance_m is None
