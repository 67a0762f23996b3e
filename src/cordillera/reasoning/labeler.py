"""Privileged rule labeler: a CoC per keyframe from the simulator's state and the expert's decision.

For each keyframe t0 (``keyframes.rollout_keyframes``) the labeler takes the expert's
``Plan.decisions`` at t0, collects the critical components that justify it **as known at t0**,
and writes one sentence with varied phrasing (templates + synonyms, seeded).

No future leakage, by construction and checked in code (``leakage_violations``): an object is
named only if, at t0, it exists (``appear_us <= t0``), the simulator marks it visible
(``AgentState.visible``) and it lies inside the camera coverage (range ``PERCEPTION_RANGE_M`` and
azimuth within ``CAMERA_HALF_FOV_RAD`` of the heading); a light's colour is the colour at t0; a
hazard is used only once its onset has happened. The released autolabeler controls this only by
prompt wording (spec/alpamayo_training_data.md §6.4); we make it a hard rule because our labels
come from privileged state, which would otherwise happily describe the future.

The decision itself may come from up to ``DECISION_LOOKAHEAD_US`` after t0 (the released labeler
sees 6 s of future to name the decision actually taken, §6.4) — but only a decision whose causal
object passes the visibility test at t0.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from cordillera.reasoning.keyframes import Keyframe, rollout_keyframes
from cordillera.reasoning.schema import (
    DIRECTED_LATERAL,
    INTERESTING_LATERAL,
    INTERESTING_LONGITUDINAL,
    LATERAL,
    LONGITUDINAL,
    CocRecord,
    CriticalObject,
    SignalCue,
    compose,
)
from cordillera.sim.expert import ExpertPolicy

PERCEPTION_RANGE_M = 120.0  # ours: objects farther than this are not named (front-tele reach)
LIGHT_RANGE_M = 130.0  # ours: traffic lights are large and bright
# The default 4 cameras (cross-left, front-wide 120°, cross-right, front-tele) cover roughly
# ±120° around the heading: front-wide ±60°, the cross cameras centred near ±60° with 120° FOV.
CAMERA_HALF_FOV_RAD = math.radians(120.0)
DECISION_LOOKAHEAD_US = 1_000_000  # ours
STATIC_OBSTACLES = ("cone", "barrier", "debris", "parked_car")
HAZARD_REACTIONS = ("Stop", "Yield", "Keep Distance", "Adapt Speed", "Gap-search")
HAZARD_MEMORY_US = 3_000_000  # ours: a hazard older than this no longer explains the decision


@dataclass(frozen=True)
class CocEvent:
    event_start_timestamp_us: int  # clip-relative µs (= t0)
    cot: str
    record: CocRecord
    keyframe_kind: str  # "meta_action" | "hazard"


# ----------------------------------------------------------------------------------------------
# Visibility at t0
# ----------------------------------------------------------------------------------------------
def to_rig(ego, x_m: float, y_m: float) -> tuple[float, float]:
    """(forward, left) of a local point in the ego rig frame."""
    dx, dy = x_m - ego.x_m, y_m - ego.y_m
    c, s = math.cos(ego.yaw_rad), math.sin(ego.yaw_rad)
    return c * dx + s * dy, -s * dx + c * dy


def in_view(ego, x_m: float, y_m: float, range_m: float = PERCEPTION_RANGE_M) -> bool:
    f, l = to_rig(ego, x_m, y_m)
    return math.hypot(f, l) <= range_m and abs(math.atan2(l, f)) <= CAMERA_HALF_FOV_RAD


def actor_visible_at(scenario, step, actor_id: str | None, t0_us: int) -> bool:
    """True iff the actor exists, is visible and inside the camera coverage at ``t0_us``."""
    if actor_id is None:
        return False
    try:
        spec = scenario.actor(actor_id)
    except ValueError:
        return False
    st = step.actors.get(actor_id)
    if st is None or not st.visible or spec.appear_us > t0_us:
        return False
    return in_view(step.ego, st.x_m, st.y_m)


def visible_actor_ids(scenario, step, t0_us: int) -> list[str]:
    return [a.id for a in scenario.actors if actor_visible_at(scenario, step, a.id, t0_us)]


def _light(scenario, light_id):
    return next((tl for tl in scenario.traffic_lights if tl.id == light_id), None)


def light_visible_at(scenario, step, light_id: str | None) -> bool:
    tl = _light(scenario, light_id)
    if tl is None or light_id not in step.signals:
        return False
    f, l = to_rig(step.ego, tl.x_m, tl.y_m)
    # the lamps must face the ego (a light for cross traffic shows us its back)
    facing = math.cos(tl.heading_rad - (step.ego.yaw_rad + math.pi)) > 0.0
    return f > 0 and math.hypot(f, l) <= LIGHT_RANGE_M and facing


# ----------------------------------------------------------------------------------------------
# Record from state
# ----------------------------------------------------------------------------------------------
_RELATIONS = {"lead": "lead", "cut_in": "cut_in", "merging": "merging", "crossing": "crossing",
              "oncoming": "oncoming", "blocking": "blocking"}


def _object_from_state(scenario, step, actor_id: str, relation: str | None, distance_m=None) -> CriticalObject:
    spec = scenario.actor(actor_id)
    st = step.actors[actor_id]
    f, l = to_rig(step.ego, st.x_m, st.y_m)
    side = "left" if l > 0 else "right"
    rel = _RELATIONS.get(relation or "", None)
    if rel is None:
        rel = "ahead" if abs(l) < 2.5 and f > 0 else (side if f > -2.0 else "behind")
    if rel == "cut_in":
        rel = f"cut_in_{side}"
    if spec.kind in STATIC_OBSTACLES or spec.is_static:
        state = "parked" if spec.kind == "parked_car" else "static"
    elif st.speed_mps < 0.3:
        state = "stopped"
    elif st.accel_mps2 < -1.5:
        state = "braking"
    elif rel == "crossing" or spec.kind == "pedestrian":
        state = "crossing" if rel == "crossing" or abs(l) < 6.0 else "moving"
    elif st.speed_mps < 0.6 * max(step.ego.speed_mps, 1.0):
        state = "slow"
    else:
        state = "moving"
    dist = float(distance_m) if distance_m is not None else max(0.0, f)
    # speed along the ego heading (for Keep Distance checks)
    v_along = st.speed_mps * math.cos(st.yaw_rad - step.ego.yaw_rad)
    return CriticalObject(kind=spec.kind, relation=rel, state=state, distance_m=round(dist, 2),
                          speed_mps=round(float(v_along), 2), accel_mps2=round(float(st.accel_mps2), 2), id=actor_id)


def _statics_ahead(scenario, step, t0_us, range_m=PERCEPTION_RANGE_M) -> list[tuple[str, float, float]]:
    out = []
    for aid in visible_actor_ids(scenario, step, t0_us):
        spec = scenario.actor(aid)
        if spec.kind in ("cone", "barrier"):
            st = step.actors[aid]
            f, l = to_rig(step.ego, st.x_m, st.y_m)
            if 0 < f <= range_m:
                out.append((aid, f, l))
    return out


def _stop_sign_ahead(scenario, step, range_m=80.0) -> bool:
    for sg in scenario.map.signs:
        if sg.kind == "stop":
            f, l = to_rig(step.ego, sg.x_m, sg.y_m)
            if 0 < f <= range_m and abs(l) < 12.0:
                return True
    return False


def _crosswalk_ahead(scenario, step, range_m=60.0) -> bool:
    for cw in scenario.map.crosswalks:
        c = np.mean(cw.polygon_xy, axis=0)
        f, l = to_rig(step.ego, float(c[0]), float(c[1]))
        if 0 < f <= range_m and abs(l) < 15.0:
            return True
    return False


def build_record(scenario, step, decisions: dict | None, t0_us: int, hazards=()) -> CocRecord:
    """The CoC record at ``t0_us`` from the expert's ``decisions`` and the state in ``step``
    (the StepRecord at t0). Only causes visible / known at t0 enter the record."""
    rec = CocRecord.from_decisions(decisions)
    d = decisions or {}
    objects: list[CriticalObject] = []
    signals: list[SignalCue] = []
    events: list[str] = []
    lane_chars: list[str] = []
    routing = None

    co = d.get("causal_object") or None
    if isinstance(co, dict) and actor_visible_at(scenario, step, co.get("id"), t0_us):
        objects.append(_object_from_state(scenario, step, co["id"], co.get("relation"), co.get("distance_m")))
    # hazards that have begun by t0 and whose actor is visible add their object
    for hz in hazards:  # a recent hazard names its object when the decision reacts but names none
        if objects or rec.longitudinal not in HAZARD_REACTIONS:
            break
        if not hz.actor_id:
            continue
        if 0 <= t0_us - hz.t_us <= HAZARD_MEMORY_US and actor_visible_at(scenario, step, hz.actor_id, t0_us):
            rel = {"cut_in": "cut_in", "jaywalker": "crossing", "pedestrian_crossing": "crossing",
                   "lead_braking": "lead", "lead_emergency_braking": "lead", "blocked_lane": "blocking",
                   "oncoming_traffic": "oncoming", "crossing_traffic": "crossing", "merge": "merging"}.get(hz.kind)
            objects.append(_object_from_state(scenario, step, hz.actor_id, rel))

    sig = d.get("signal") or None
    if isinstance(sig, dict) and light_visible_at(scenario, step, sig.get("id")):
        colour = step.signals[sig["id"]]  # the colour at t0, never a later one
        signals.append(SignalCue("traffic_light", colour, sig["id"]))
        events.append("intersection")
    sl = d.get("stop_line_distance_m")
    if sl is not None and not signals and _stop_sign_ahead(scenario, step):
        signals.append(SignalCue("stop_sign"))
        events += ["stop_sign", "intersection"]
    if sl is not None and rec.longitudinal == "Stop":
        events.append("stop_line")

    cones = _statics_ahead(scenario, step, t0_us)
    if len(cones) >= 2:
        events.append("construction_zone")
        lane_chars.append("narrowing lanes")
        if not any(o.kind in ("cone", "barrier") for o in objects):
            aid, f, l = min(cones, key=lambda c: c[1])
            objects.append(_object_from_state(scenario, step, aid, None))
    if any(o.kind == "pedestrian" and o.relation == "crossing" for o in objects) and _crosswalk_ahead(scenario, step):
        events.append("crosswalk")
    known = {h.kind for h in hazards if h.t_us <= t0_us}
    if "curve" in known and rec.longitudinal == "Adapt Speed" and not objects:
        events.append("curve")
        lane_chars.append("curvy road")
    if "speed_limit_change" in known and rec.longitudinal == "Adapt Speed" and not objects and "curve" not in events:
        events.append("speed_limit_sign")
    if rec.lateral == "Turn" and rec.lateral_direction:
        routing = f"turn {rec.lateral_direction} at the intersection"
        if "intersection" not in events:
            events.append("intersection")
    elif rec.lateral == "Merge":
        events.append("on_ramp")
    elif rec.lateral == "Split":
        events.append("off_ramp")
    if scenario.conditions.weather == "rain":
        lane_chars.append("wet road")
    rec = rec.with_(objects=tuple(objects), signals=tuple(signals), road_events=tuple(dict.fromkeys(events)),
                    lane_characteristics=tuple(dict.fromkeys(lane_chars)), routing_intent=routing,
                    stop_line_distance_m=None if sl is None else float(sl))
    return rec


def leakage_violations(record: CocRecord, scenario, step, t0_us: int) -> list[str]:
    """What in ``record`` is not visible / known at t0 (empty list = clean)."""
    out = []
    for o in record.objects:
        if o.id is None or not actor_visible_at(scenario, step, o.id, t0_us):
            out.append(f"object {o.id!r} ({o.kind}) is not visible at t0={t0_us}")
    for s in record.signals:
        if s.kind == "traffic_light":
            if not light_visible_at(scenario, step, s.id):
                out.append(f"light {s.id!r} is not visible at t0={t0_us}")
            elif step.signals.get(s.id) != s.colour:
                out.append(f"light {s.id!r} is {step.signals.get(s.id)} at t0, record says {s.colour}")
    return out


# ----------------------------------------------------------------------------------------------
# Phrasing bank
# ----------------------------------------------------------------------------------------------
_NOUNS = {
    "car": ("the car", "the vehicle", "the sedan"),
    "truck": ("the truck", "the heavy truck", "the lorry"),
    "bus": ("the bus", "the city bus"),
    "cyclist": ("the cyclist", "the bicyclist", "the bike rider"),
    "pedestrian": ("the pedestrian", "the person on foot", "the pedestrian"),
    "cone": ("the cones", "the traffic cones", "the orange cones"),
    "barrier": ("the barriers", "the construction barriers", "the barricades"),
    "debris": ("the debris", "the debris on the road", "the fallen cargo"),
    "parked_car": ("the parked car", "the parked vehicle", "the parked car"),
    "animal": ("the animal", "the animal on the road"),
    "vehicle": ("the vehicle", "the car"),
}


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def object_phrase(o: CriticalObject, rng) -> str:
    base = _pick(rng, _NOUNS.get(o.kind, ("the object",)))
    noun = base[4:] if base.startswith("the ") else base
    if o.relation == "lead" and o.kind in ("car", "vehicle"):
        return _pick(rng, ("the lead vehicle", "the car ahead", "the vehicle in front", "the lead car"))
    if o.relation == "lead":
        return _pick(rng, (f"the lead {noun}", f"the {noun} ahead", f"the {noun} in front"))
    if o.relation == "oncoming":
        return _pick(rng, (f"the oncoming {noun}", f"an oncoming {noun}"))
    if o.relation.startswith("cut_in"):
        side = o.relation.rsplit("_", 1)[-1]
        return _pick(rng, (f"the {noun} cutting in from the {side}", f"a {noun} cutting in from the {side}"))
    if o.relation == "merging":
        return _pick(rng, (f"the {noun} on the main road", f"the {noun} already in the target lane"))
    return base


def _side(o: CriticalObject) -> str:
    return "left" if o.relation in ("left", "cut_in_left") else "right"


def cause_clauses(r: CocRecord, rng) -> tuple[list[str], list[str]]:
    """(cause clauses, context sentences) for the record. Cause clauses follow "since/because";
    context sentences are noun phrases for the structured style. None uses a decision verb."""
    causes: list[str] = []
    ctx: list[str] = []
    lon, lat, dirn = r.longitudinal, r.lateral, r.lateral_direction
    light = next((s for s in r.signals if s.kind == "traffic_light"), None)
    sign = any(s.kind == "stop_sign" for s in r.signals)
    obj = r.objects[0] if r.objects else None
    ev = set(r.road_events)

    if light is not None and light.colour in ("red", "yellow", "green"):
        c = light.colour
        if lon in ("Stop", "Yield", "Adapt Speed", "Keep Distance") or c != "green":
            causes += [f"the light is {c}", f"the traffic light ahead is {c}", f"of the {c} light at the intersection",
                       f"the signal at the intersection shows {c}", f"of the {c} traffic light"]
            ctx += [f"{c.capitalize()} traffic light at the intersection ahead", f"Intersection ahead with a {c} light"]
        else:
            causes += ["the light is green", "the traffic light is green", "the signal has turned green",
                       "of the green light at the intersection"]
            ctx += ["Green light at the intersection ahead", "Intersection ahead with a green light"]
    elif light is not None and light.colour in ("dark", "flashing_red", "flashing_yellow"):
        what = {"dark": "dark", "flashing_red": "flashing red", "flashing_yellow": "flashing yellow"}[light.colour]
        causes += [f"the traffic light at the intersection is {what}", f"of the {what} traffic light",
                   f"the signal ahead is {what}"]
        ctx += [f"Intersection ahead with a {what} traffic light"]
    if sign:
        causes += ["of the stop sign at the intersection", "there is a stop sign ahead",
                   "a stop sign controls the intersection ahead"]
        ctx += ["Stop sign at the intersection ahead", "Intersection controlled by a stop sign ahead"]
    if obj is not None:
        n = object_phrase(obj, rng)
        where = {"crossing": _pick(rng, ("crossing the road ahead", "crossing in front", "crossing the ego lane")),
                 "oncoming": "approaching from the opposite direction"}.get(obj.relation, "")
        if obj.kind in ("cone", "barrier"):
            side = _side(obj)
            causes += [f"{n} narrow the lane on the {side}", f"{n} on the {side} intrude into the lane",
                       f"of {n} along the {side} side of the lane", f"the construction zone ahead narrows the lane"]
            ctx += [f"Construction zone ahead with narrowing lanes and cones on the {side} shoulder",
                    f"Construction zone ahead with {n[4:] if n.startswith('the ') else n} on the {side}",
                    "Work zone ahead with a narrowed lane"]
        elif obj.state in ("static", "parked") or obj.relation == "blocking":
            causes += [f"{n} is blocking the lane ahead", f"{n} ahead obstructs the lane",
                       f"the lane ahead is obstructed by {n}"]
            ctx += [f"{n.capitalize()} blocking the ego lane ahead", f"Lane ahead obstructed by {n}"]
        elif obj.relation == "crossing" or obj.state == "crossing":
            causes += [f"{n} is {where}", f"{n} is about to cross in front", f"of {n} {where}"]
            if "crosswalk" in ev:
                causes += [f"{n} is on the crosswalk", f"{n} is crossing at the crosswalk"]
                ctx += [f"{n.capitalize()} crossing at the crosswalk ahead"]
            ctx += [f"{n.capitalize()} {where}", f"{n.capitalize()} entering the road ahead"]
        elif obj.relation == "oncoming":
            causes += [f"{n} has priority", f"of {n} {where}", f"{n} is still approaching"]
            ctx += [f"Oncoming traffic at the intersection, {n[4:] if n.startswith('the ') else n} approaching"]
        elif obj.relation.startswith("cut_in"):
            causes += [f"{n} is entering the lane", f"of {n}", f"{n} is moving into the ego lane"]
            ctx += [f"{n.capitalize()} ahead"]
        elif obj.relation == "merging":
            causes += [f"of {n}", f"traffic is flowing on the main road", f"{n} occupies the target lane"]
            ctx += ["On-ramp joining the main road with traffic in the target lane"]
        else:
            state = {"braking": _pick(rng, ("is braking", "is braking ahead", "has its brake lights on")),
                     "stopped": _pick(rng, ("has stopped", "is stationary", "is standing still")),
                     "slow": _pick(rng, ("is moving slowly", "is slower", "is travelling slowly")),
                     }.get(obj.state, _pick(rng, ("is ahead in the lane", "is close ahead", "is in the same lane")))
            causes += [f"{n} {state}", f"{n} ahead {state}" if not n.endswith("ahead") else f"{n} {state}"]
            ctx += [f"{n.capitalize()} {state}"]
    if "construction_zone" in ev and not (obj and obj.kind in ("cone", "barrier")):
        causes += ["of the construction zone ahead", "the construction zone narrows the lane"]
        ctx += ["Construction zone ahead with narrowing lanes"]
    if "curve" in ev:
        causes += ["of the curve ahead", "the road bends ahead", "of the sharp bend ahead", "the road ahead is curvy"]
        ctx += ["Curvy road ahead", "Sharp curve ahead on the road"]
    if "speed_limit_sign" in ev:
        causes += ["the speed limit drops ahead", "of the lower speed limit sign", "a lower speed limit is posted ahead"]
        ctx += ["Speed limit sign ahead with a lower limit"]
    if r.routing_intent and lat == "Turn":
        causes += [f"the route goes {dirn} at the intersection", f"the planned route heads {dirn} at the junction",
                   f"the navigation route continues to the {dirn}"]
        ctx += [f"Intersection ahead where the route goes {dirn}"]
    if lat == "Merge" or "on_ramp" in ev:
        causes += ["the on-ramp joins the main road", "the ramp lane ends ahead", "the acceleration lane is ending"]
        ctx += ["On-ramp joining the main road"]
    if lat == "Split" or "off_ramp" in ev:
        causes += ["the route leaves the main road at the exit", "the route follows the off-ramp"]
        ctx += ["Exit ramp ahead on the route"]
    if not causes:
        if lon == "Resume Speed" or lon is None:
            causes += ["the road ahead is clear", "the lane ahead is free", "no hazard is in the path",
                       "there is nothing in the path", "the way ahead is clear"]
            ctx += ["Clear road ahead", "Open lane with no hazards ahead"]
        elif lon == "Adapt Speed":
            causes += ["of the road conditions ahead", "of the upcoming road geometry", "the speed limit is lower here"]
            ctx += ["Road ahead calls for a lower speed"]
        else:
            causes += ["of the traffic situation ahead", "of the conditions ahead", "of the road ahead"]
            ctx += ["Busy road ahead"]
    if "wet road" in r.lane_characteristics and rng.random() < 0.3:
        causes = [c + " on the wet road" for c in causes]
    return causes, ctx


def phrase(record: CocRecord, rng: np.random.Generator | int | None = None) -> str:
    """One natural CoC sentence for ``record`` (varied with ``rng``)."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    causes, ctx = cause_clauses(record, rng)
    use_ctx = rng.random() < 0.3 and ctx
    return compose(record, rng, cause=_pick(rng, causes), context=_pick(rng, ctx) if use_ctx else None)


# ----------------------------------------------------------------------------------------------
# Rollout -> events
# ----------------------------------------------------------------------------------------------
def decision_source(rollout, i0: int, scenario, t0_us: int) -> tuple[dict | None, int]:
    """(decisions, step index) the label of the keyframe at step ``i0`` uses: the expert's decision
    at t0 when it is "interesting", else the first interesting one within ``DECISION_LOOKAHEAD_US``
    whose causal object is visible at t0, else the decision at t0."""
    steps = rollout.steps
    d0 = steps[i0].plan.decisions if steps[i0].plan is not None else None
    if d0 and (d0.get("longitudinal") in INTERESTING_LONGITUDINAL or d0.get("lateral") in INTERESTING_LATERAL):
        return d0, i0
    for i in range(i0 + 1, len(steps)):
        st = steps[i]
        if st.t_us - t0_us > DECISION_LOOKAHEAD_US:
            break
        d = st.plan.decisions if st.plan is not None else None
        if not d or not (d.get("longitudinal") in INTERESTING_LONGITUDINAL or d.get("lateral") in INTERESTING_LATERAL):
            continue
        co = d.get("causal_object")
        if co is None or actor_visible_at(scenario, steps[i0], co.get("id"), t0_us):
            return d, i
    return d0, i0


def _decision_at(rollout, i0: int, scenario, t0_us: int) -> dict | None:
    return decision_source(rollout, i0, scenario, t0_us)[0]


def _seed_for(seed: int, clip: str, t0_us: int) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(f"{clip}:{t0_us}".encode())) % (2**32)


def label_rollout(rollout, scenario, seed: int = 0, keyframes: list[Keyframe] | None = None) -> list[CocEvent]:
    """CoC events of one expert rollout: one per keyframe with a known decision. ``t0`` is
    clip-relative (the rollout clock starts at 0 with the scenario)."""
    if rollout.failed:
        raise ValueError(f"rollout {rollout.rollout_id} failed ({rollout.error}); refusing to label it")
    kfs = rollout_keyframes(rollout, scenario) if keyframes is None else keyframes
    index = {int(s.t_us): i for i, s in enumerate(rollout.steps)}
    events = []
    for kf in kfs:
        i0 = index.get(int(kf.t_us))
        if i0 is None or kf.t_us < rollout.force_gt_end_us:
            continue  # during force-GT warm-up the expert's decision is not what the ego drives
        rec = record_at(scenario, rollout.steps[i0], _decision_at(rollout, i0, scenario, kf.t_us), kf.t_us)
        if rec is None:
            continue
        cot = phrase(rec, _seed_for(seed, scenario.id, kf.t_us))
        events.append(CocEvent(int(kf.t_us), cot, rec, kf.kind))
    return events


def record_at(scenario, step, decisions: dict | None, t0_us: int) -> CocRecord | None:
    """The labelled CoC record for the expert's ``decisions`` at ``t0_us`` and the state ``step``
    (a StepRecord or WorldState: ego, actors, signals), or None when the decisions name no
    longitudinal or lateral meta-action (such a t0 gets no label)."""
    if not decisions or (decisions.get("longitudinal") not in LONGITUDINAL and decisions.get("lateral") not in LATERAL):
        return None
    hazards = [h for h in scenario.hazards if h.t_us <= t0_us]
    rec = build_record(scenario, step, decisions, t0_us, hazards)
    bad = leakage_violations(rec, scenario, step, t0_us)
    if bad:  # build_record filters already; this guards later edits of it
        raise AssertionError("CoC leakage: " + "; ".join(bad))
    if rec.longitudinal is None and rec.lateral is None:
        return None
    if rec.lateral in DIRECTED_LATERAL and rec.lateral_direction is None:
        rec = rec.with_(lateral=None)
    return rec


class PrivilegedReasoner:
    """The labeler run live in closed loop: at each step the CoC the labeler would write for the
    current simulator state and the expert's decision *now* (the expert is driven alongside the
    policy, on the state the policy's own driving produced).

    A diagnostic, not a driver: forcing this text into a VLA (``VLAPolicy(reasoning="privileged")``)
    measures how well its action expert drives given the right reasoning, i.e. how much of a closed-loop
    gap lies in perception → decision. Unlike ``label_rollout`` it cannot look ``DECISION_LOOKAHEAD_US``
    ahead for a decision the expert is about to take, so it names a stop or a yield up to 1 s later
    than the training labels do.
    """

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.expert = ExpertPolicy(privileged=True)
        self._world = None
        self._scenario = None

    def start(self, session) -> None:
        self.expert.start(session)
        self._world = self._scenario = None

    def observe_world(self, world_state, scenario) -> None:
        self.expert.observe_world(world_state, scenario)
        self._world, self._scenario = world_state, scenario

    def step(self, observation, t_now_us: int, t_query_us: int):
        """(the expert's plan at ``t_now_us``, the labeler's CoC for it or None when its decision
        gives no label). Call it at every control step: the expert keeps memory across steps (stop
        signs served, committed manoeuvres) as in a continuous drive."""
        plan = self.expert.plan(observation, t_now_us, t_query_us)
        rec = record_at(self._scenario, self._world, plan.decisions, int(t_now_us))
        return plan, None if rec is None else phrase(rec, _seed_for(self.seed, self._scenario.id, int(t_now_us)))


__all__ = [
    "PERCEPTION_RANGE_M", "CAMERA_HALF_FOV_RAD", "CocEvent", "to_rig", "in_view", "actor_visible_at",
    "visible_actor_ids", "light_visible_at", "build_record", "leakage_violations", "object_phrase", "cause_clauses",
    "phrase", "label_rollout", "record_at", "PrivilegedReasoner", "decision_source", "write_reasoning_parquet",
    "read_reasoning_parquet",
]


# ----------------------------------------------------------------------------------------------
# Released file format: reasoning/ood_reasoning.parquet (spec/alpamayo_training_data.md §6.1 item 5)
# ----------------------------------------------------------------------------------------------
CLIP_ID = "clip_id"
EVENTS = "events"
EVENT_T = "event_start_timestamp"
EVENT_COT = "cot"


def write_reasoning_parquet(events_by_clip: dict, path) -> None:
    """Write {clip_id: [CocEvent | {"event_start_timestamp", "cot"}]} as the released table:
    index ``clip_id``, column ``events`` = list of {event_start_timestamp (µs, clip-relative), cot}."""
    import pandas as pd

    rows, ids = [], []
    for clip, evs in events_by_clip.items():
        out = []
        for e in evs:
            if isinstance(e, CocEvent):
                out.append({EVENT_T: int(e.event_start_timestamp_us), EVENT_COT: str(e.cot)})
            else:
                out.append({EVENT_T: int(e[EVENT_T]), EVENT_COT: str(e[EVENT_COT])})
        out.sort(key=lambda d: d[EVENT_T])
        ids.append(str(clip))
        rows.append(out)
    df = pd.DataFrame({EVENTS: rows}, index=pd.Index(ids, name=CLIP_ID))
    df.to_parquet(path)


def read_reasoning_parquet(path) -> dict[str, list[dict]]:
    """{clip_id: [{"event_start_timestamp": int µs, "cot": str}]}; ``events`` may be a list or a
    JSON string (both occur in the release)."""
    import json

    import pandas as pd

    df = pd.read_parquet(path)
    if CLIP_ID in df.columns:
        df = df.set_index(CLIP_ID)
    if EVENTS not in df.columns:
        raise ValueError(f"{path}: no '{EVENTS}' column (columns: {list(df.columns)})")
    out = {}
    for clip, evs in df[EVENTS].items():
        if isinstance(evs, str):
            evs = json.loads(evs)
        out[str(clip)] = [{EVENT_T: int(e[EVENT_T]), EVENT_COT: str(e[EVENT_COT])} for e in list(evs)]
    return out
