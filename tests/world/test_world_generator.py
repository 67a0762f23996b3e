"""Generator dispatch, suites, conditions sampling, malformed scenario files, log-replay variants."""

import json
import math

import numpy as np
import pytest

from cordillera.world import generator
from cordillera.world.families._common import sample_conditions
from cordillera.world.log_replay import scripted_tracks, to_log_replay
from cordillera.world.scenario import LogBehavior, Scenario, StaticBehavior


def test_families_and_categories():
    assert len(generator.FAMILIES) == 14
    assert set(generator.LONG_TAIL) == {"jaywalker", "construction_zone", "debris_in_lane", "emergency_brake_lead",
                                        "faulty_traffic_light"}
    for name, mod in generator.FAMILIES.items():
        assert mod.CATEGORY in ("nominal", "long_tail") and mod.FAMILY == name


def test_unknown_names_raise_listing_valid_ones():
    with pytest.raises(ValueError, match="road_following"):
        generator.make("flying_car", 1)
    with pytest.raises(ValueError, match="standard"):
        generator.suite("everything")
    with pytest.raises(ValueError, match="traffic_mode"):
        generator.make("cut_in", 1, traffic_mode="replay")


def test_first_per_family_keeps_the_first_seeds_of_every_family():
    std = generator.suite("standard")
    held = generator.first_per_family(std, 3)
    fams = {f for f, _ in std}
    assert len(held) == 3 * len(fams) and {f for f, _ in held} == fams
    for fam in fams:
        assert [s for f, s in held if f == fam] == [s for f, s in std if f == fam][:3]
    assert held == [p for p in std if p in held]  # suite order kept
    assert generator.first_per_family([("a", 5), ("b", 1), ("a", 2), ("a", 9)], 2) == [("a", 5), ("b", 1), ("a", 2)]
    with pytest.raises(ValueError, match="n must be"):
        generator.first_per_family(std, 0)


def test_suite_sizes_and_category_mix():
    smoke = generator.suite("smoke")
    assert 4 <= len(smoke) <= 6 and any(f in generator.LONG_TAIL for f, _ in smoke)
    std = generator.suite("standard")
    assert len(std) >= 100 and {f for f, _ in std} == set(generator.FAMILIES)
    assert all(1000 <= s < 2000 for _, s in std) and len(set(std)) == len(std)
    lt = generator.suite("long_tail")
    assert len(lt) >= 30 and all(f in generator.LONG_TAIL for f, _ in lt)
    demo = generator.suite("demo")
    assert 5 <= len(demo) <= 6 and any(f in generator.LONG_TAIL for f, _ in demo)
    train = generator.suite("train", n=300)
    assert len(train) == 300 and {f for f, _ in train} == set(generator.FAMILIES)
    eval_seeds = {s for _, s in std + lt + demo + smoke}
    assert not eval_seeds & {s for _, s in train}
    scs = generator.make_suite("smoke")
    assert [sc.id for sc in scs] == [f"{f}-{s:05d}" for f, s in smoke]
    with pytest.raises(ValueError, match="train suite size"):
        generator.suite("train", n=0)


def test_conditions_frequencies():
    rng = np.random.default_rng(0)
    draws = [sample_conditions(rng) for _ in range(4000)]
    frac = lambda key, val: np.mean([d[key] == val for d in draws])  # noqa: E731
    assert frac(0, "night") == pytest.approx(0.20, abs=0.025)
    assert frac(1, "rain") == pytest.approx(0.15, abs=0.025)
    assert frac(1, "fog") == pytest.approx(0.05, abs=0.015)
    # every family samples them: some night/rain scenarios appear in the standard suite
    conds = [generator.make(f, s).conditions for f, s in generator.suite("standard")[::3]]
    assert any(c.time_of_day == "night" for c in conds) and any(c.weather != "clear" for c in conds)


def test_params_override_keeps_background_deterministic():
    from dataclasses import replace
    p = generator.make_params("car_following", 7)
    sc = generator.make("car_following", 7, params=replace(p, brake_decel_mps2=3.3))
    assert sc.actor("lead").behavior.brake_events[0].decel_mps2 == 3.3
    assert sc.to_json() == generator.make("car_following", 7, params=replace(p, brake_decel_mps2=3.3)).to_json()


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.pop("ego"), "ego"),
    (lambda d: d.update(schema="other/1"), "schema"),
    (lambda d: d["actors"][0].update(kind="spaceship"), "spaceship"),
    (lambda d: d.update(duration_us=12345), "duration_us"),
    (lambda d: d["ego"].update(route_lane_ids=["nope"]), "nope"),
    (lambda d: d["map"]["lanes"][0].update(centerline_xy=[[0, 0]]), "polyline"),
    (lambda d: d["actors"][0]["behavior"].update(kind="teleport"), "teleport"),
    (lambda d: d["actors"][0].pop("x_m"), "x_m"),
])
def test_malformed_scenario_json_raises_value_error(mutate, match, tmp_path):
    d = generator.make("car_following", 1000).to_dict()
    mutate(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=match):
        Scenario.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Scenario.load(path)


def test_log_replay_variant():
    sc = generator.make("car_following", 1000)
    log = generator.make("car_following", 1000, traffic_mode="log")
    assert log.traffic_mode == "log" and log.id == sc.id
    assert Scenario.from_json(log.to_json()).to_json() == log.to_json()
    for a in log.actors:
        assert isinstance(a.behavior, (LogBehavior, StaticBehavior))
        if isinstance(a.behavior, LogBehavior):
            b = a.behavior
            assert b.t_us[0] == 0 and b.t_us[-1] == sc.duration_us and len(b.t_us) == 201
            assert (a.x_m, a.y_m) == b.xy[0]
    # the scripted lead follows its brake event: decelerates to (near) standstill after braking begins
    lead = log.actor("lead").behavior
    ev = sc.actor("lead").behavior.brake_events[0]
    xy = np.asarray(lead.xy)
    v = np.linalg.norm(np.diff(xy, axis=0), axis=1) / 0.1
    k = ev.t_us // 100_000
    assert v[k - 5] == pytest.approx(sc.actor("lead").speed_mps, abs=0.5)
    v_end = ev.target_speed_mps
    k_reach = k + int(math.ceil((sc.actor("lead").speed_mps - v_end) / ev.decel_mps2 * 10)) + 2
    assert v[k_reach] == pytest.approx(v_end, abs=0.3)


def test_scripted_tracks_stop_at_red_and_walkers_walk():
    sc = generator.make("traffic_light", 1000)  # turns_red: cross traffic waits at its red first
    tracks = scripted_tracks(sc)
    for a in sc.actors:
        if a.id.startswith("cross_s"):
            t, xy, _ = tracks[a.id]
            light = next(l for l in sc.traffic_lights if a.behavior.route_lane_ids[0] in l.lane_ids)
            sl = sc.map.stop_lines_on(a.behavior.route_lane_ids[0])[0]
            lane = sc.map.lane(a.behavior.route_lane_ids[0])
            s, _ = lane.to_frenet(xy)
            red = np.array([light.program.state_at(int(tt)) == "red" for tt in t])
            # the box front never passes the stop line while the light is red and it was behind it
            behind = s + 0.5 * a.length_m <= sl.s_m + 0.05
            assert not np.any(red[1:] & behind[:-1] & ~behind[1:])
    ped = generator.make("pedestrian_crosswalk", 1000)
    t, xy, _ = scripted_tracks(ped)["ped0"]
    b = ped.actor("ped0").behavior
    k = b.start_us // 100_000
    assert np.allclose(xy[: k + 1], b.path_xy[0]) and np.allclose(xy[-1], b.path_xy[-1])


def test_to_log_replay_validates_tracks():
    sc = generator.make("cut_in", 1000)
    tracks = scripted_tracks(sc)
    with pytest.raises(ValueError, match="no track for moving actors"):
        to_log_replay(sc, {})
    bad = dict(tracks)
    t, xy, yaw = bad["cutter"]
    bad["cutter"] = (t[::-1], xy, yaw)
    with pytest.raises(ValueError, match="strictly increasing"):
        to_log_replay(sc, bad)
    with pytest.raises(ValueError, match="unknown actors"):
        to_log_replay(sc, {**tracks, "ghost": tracks["cutter"]})
    # cutter ends up in the ego lane
    lane = sc.map.lane(sc.ego.route_lane_ids[0])
    assert lane.on_lane(tracks["cutter"][1][-1])


def test_truncated_shortens_on_the_control_grid_and_never_lengthens():
    from cordillera.world.generator import make, truncated

    sc = make("cut_in", 1000)
    t = truncated(sc, 1.234)
    assert t.duration_us == 1_200_000 and t.force_gt_duration_us == min(sc.force_gt_duration_us, 1_200_000)
    assert truncated(sc, 1e6).duration_us == sc.duration_us and truncated(sc, None) is sc
    with pytest.raises(ValueError, match=">= 0.1"):
        truncated(sc, 0.01)
