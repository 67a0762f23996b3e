"""Chain-of-Causation (CoC) schema: decision vocabularies, the typed record, composition into one
sentence and parsing back.

The decision names are the closed sets of the released autolabeler prompt
(spec/alpamayo_training_data.md §6.2): at most one longitudinal and one lateral decision, lateral
decisions Lane Change / Nudge / Turn carry a direction. A ``CocRecord`` also carries the critical
components that justify the decision (objects, signals, road events, lane characteristics,
routing intent). ``compose(record, rng)`` writes the one-sentence trace in one of several styles
(the released labels mix a natural verb phrase "Stop at the stop line since the light is red" and
a structured tail "… Lateral decision: nudge left. Longitudinal decision: speed adaptation");
``parse(text)`` reads any of them — and free text from a model — back into a record.

Parsing is tolerant of wording but strict about decisions: a decision is recognised only from a
closed list of verb phrases (``LONGITUDINAL_PATTERNS`` / ``LATERAL_PATTERNS``); anything else gives
``None`` rather than a guess. Context nouns that look like decisions ("stop sign", "stopped car",
"yield sign", "merging traffic", "turning car") are excluded by the patterns themselves, and the
phrasing bank in ``labeler.py`` never uses a decision verb inside a cause phrase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

# ----------------------------------------------------------------------------------------------
# Closed sets (exact names) — spec/alpamayo_training_data.md §6.2
# ----------------------------------------------------------------------------------------------
LONGITUDINAL = ("Stop", "Yield", "Pass/Overtake", "Gap-search", "Keep Distance", "Adapt Speed", "Resume Speed")
LATERAL = ("Lane Change", "Nudge", "Turn", "Merge", "Split", "Keep Lane")
DIRECTIONS = ("left", "right")
DIRECTED_LATERAL = ("Lane Change", "Nudge", "Turn")  # "direction required" in the prompt
INTERESTING_LONGITUDINAL = ("Yield", "Stop", "Pass/Overtake", "Gap-search", "Adapt Speed")  # §6.2
INTERESTING_LATERAL = ("Lane Change", "Nudge", "Turn", "Merge", "Split")  # §6.2
# When a text names several longitudinal decisions ("slow down and stop"), the strongest wins.
LONGITUDINAL_PRIORITY = ("Stop", "Yield", "Pass/Overtake", "Gap-search", "Keep Distance", "Adapt Speed", "Resume Speed")
LATERAL_PRIORITY = ("Lane Change", "Turn", "Merge", "Split", "Nudge", "Keep Lane")

SIGNAL_COLOURS = ("red", "yellow", "green", "dark", "flashing_yellow", "flashing_red")
# Object kinds: the simulator's actor kinds plus a generic "vehicle" a model may write.
OBJECT_KINDS = ("car", "truck", "bus", "cyclist", "pedestrian", "cone", "barrier", "debris", "parked_car", "animal",
                "vehicle")
VEHICLE_KINDS = ("car", "truck", "bus", "parked_car", "vehicle")
ROAD_EVENTS = ("construction_zone", "intersection", "crosswalk", "stop_line", "stop_sign", "yield_sign",
               "speed_limit_sign", "curve", "on_ramp", "off_ramp", "speed_bump", "school_zone", "blocked_lane",
               "dark_signal", "flashing_signal")

# Structured-tail names (released label style "Lateral decision: nudge left. Longitudinal decision:
# speed adaptation").
TAIL_LONGITUDINAL = {
    "Stop": "stop", "Yield": "yield", "Pass/Overtake": "pass/overtake", "Gap-search": "gap search",
    "Keep Distance": "keep distance", "Adapt Speed": "speed adaptation", "Resume Speed": "resume speed",
}
TAIL_LATERAL = {
    "Lane Change": "lane change", "Nudge": "nudge", "Turn": "turn", "Merge": "merge", "Split": "split",
    "Keep Lane": "keep lane",
}


# ----------------------------------------------------------------------------------------------
# Record
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CriticalObject:
    """An object that causes the decision, as seen at t0 (never later)."""

    kind: str  # OBJECT_KINDS
    relation: str = "ahead"  # ahead | lead | left | right | crossing | oncoming | cut_in_left | cut_in_right | behind
    state: str = "moving"  # moving | stopped | braking | crossing | parked | static | slow
    distance_m: float | None = None  # along the ego heading at t0
    speed_mps: float | None = None  # the object's speed along the ego heading at t0 (Keep Distance checks)
    accel_mps2: float | None = None  # its acceleration at t0
    id: str | None = None

    def __post_init__(self):
        if self.kind not in OBJECT_KINDS:
            raise ValueError(f"critical object kind {self.kind!r} not in {OBJECT_KINDS}")


@dataclass(frozen=True)
class SignalCue:
    """A traffic control: a light with its colour at t0, or a sign."""

    kind: str = "traffic_light"  # traffic_light | stop_sign | yield_sign
    colour: str | None = None  # SIGNAL_COLOURS for lights
    id: str | None = None

    def __post_init__(self):
        if self.colour is not None and self.colour not in SIGNAL_COLOURS:
            raise ValueError(f"signal colour {self.colour!r} not in {SIGNAL_COLOURS}")


@dataclass(frozen=True)
class CocRecord:
    longitudinal: str | None = None
    lateral: str | None = None
    lateral_direction: str | None = None
    objects: tuple[CriticalObject, ...] = ()
    signals: tuple[SignalCue, ...] = ()
    road_events: tuple[str, ...] = ()
    lane_characteristics: tuple[str, ...] = ()  # e.g. "narrowing lanes", "wet road", "curvy road"
    routing_intent: str | None = None  # e.g. "turn left at the intersection", "take the exit"
    stop_line_distance_m: float | None = None  # known at t0 from the map; used by consistency
    extras: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if self.longitudinal is not None and self.longitudinal not in LONGITUDINAL:
            raise ValueError(f"longitudinal decision {self.longitudinal!r} not in {LONGITUDINAL}")
        if self.lateral is not None and self.lateral not in LATERAL:
            raise ValueError(f"lateral decision {self.lateral!r} not in {LATERAL}")
        if self.lateral_direction is not None and self.lateral_direction not in DIRECTIONS:
            raise ValueError(f"lateral direction {self.lateral_direction!r} not in {DIRECTIONS}")
        for ev in self.road_events:
            if ev not in ROAD_EVENTS:
                raise ValueError(f"road event {ev!r} not in {ROAD_EVENTS}")
        object.__setattr__(self, "objects", tuple(self.objects))
        object.__setattr__(self, "signals", tuple(self.signals))
        object.__setattr__(self, "road_events", tuple(self.road_events))
        object.__setattr__(self, "lane_characteristics", tuple(self.lane_characteristics))

    @property
    def decisions(self) -> tuple[str | None, str | None, str | None]:
        return self.longitudinal, self.lateral, self.lateral_direction

    def with_(self, **changes) -> "CocRecord":
        return replace(self, **changes)

    @staticmethod
    def from_decisions(decisions: dict | None, **kw) -> "CocRecord":
        """Record from an expert ``Plan.decisions`` dict; unknown values become None (tolerates
        missing keys, never invents a decision)."""
        d = decisions or {}
        lon = d.get("longitudinal")
        lat = d.get("lateral")
        dirn = d.get("lateral_direction")
        lon = lon if lon in LONGITUDINAL else None
        lat = lat if lat in LATERAL else None
        dirn = dirn if dirn in DIRECTIONS and lat in DIRECTED_LATERAL + ("Merge", "Split") else None
        return CocRecord(longitudinal=lon, lateral=lat, lateral_direction=dirn, **kw)


# ----------------------------------------------------------------------------------------------
# Decision phrases (parser side). Each pattern is a verb phrase; direction is captured where the
# decision needs one. Patterns are checked on lower-cased text.
# ----------------------------------------------------------------------------------------------
_DIR = r"(?P<dir>left|right)"
LONGITUDINAL_PATTERNS: dict[str, tuple[str, ...]] = {
    "Stop": (
        r"\bstop\b(?!\s+(?:sign|line|bar|light)s?\b)(?!-)",
        r"\bcome to (?:a |an )?(?:full |complete |gentle |smooth )?(?:stop|halt)\b",
        r"\bhalt\b", r"\bremain stopped\b", r"\bstay stopped\b", r"\bhold (?:at|before|behind) the\b",
        r"\bwait at the (?:stop line|light|red light|intersection)\b",
    ),
    "Yield": (
        r"\byield(?:s|ing)?\b(?!\s+sign)", r"\bgive way\b", r"\bgiving way\b",
        r"\blet (?:the|a|an) [a-z ]{2,30}? (?:cross|pass|go first|clear)\b",
        r"\bwait for (?:the|a|an) (?:pedestrian|cyclist|walker|crossing|cross traffic|oncoming)",
    ),
    "Pass/Overtake": (
        r"\bovertak(?:e|es|ing)\b", r"\bpass(?:es|ing)? (?:the|a) (?:slow|slower|slow-moving|moving)\b",
        r"\baccelerate past\b", r"\bpass/overtake\b",
    ),
    "Gap-search": (
        r"\bgap[- ]search(?:ing)?\b", r"\b(?:search|look|looking|searching|wait|waiting) for (?:a|an) (?:safe |suitable |open )?gap\b",
        r"\bfind (?:a|an) (?:safe |suitable |open )?gap\b", r"\b(?:fit|slot) into (?:the|a) gap\b",
    ),
    "Keep Distance": (
        r"\bkeep(?:ing)? (?:a )?(?:safe |safer |larger |steady )?(?:following )?distance\b",
        r"\bmaintain(?:ing)? (?:a )?(?:safe |steady )?(?:following )?(?:distance|gap)\b",
        r"\bfollow(?:ing)? (?:the|a) (?:lead|leading|slower|slow)\b",
        r"\bhold (?:a )?(?:safe )?gap\b", r"\bstay(?:ing)? (?:a safe distance )?behind (?:the|a)\b",
        r"\bkeep distance\b",
    ),
    "Adapt Speed": (
        r"\badapt(?:s|ing)? (?:the |its |our )?speed\b", r"\bspeed adaptation\b",
        r"\bslow(?:s|ing)? down\b", r"\breduce(?:s)? (?:the |its |our )?speed\b", r"\bease off\b",
        r"\bdecelerat(?:e|es|ing)\b", r"\bmoderate (?:the |its |our )?speed\b", r"\bslow for\b",
        r"\bproceed (?:slowly|cautiously|with caution)\b",
    ),
    "Resume Speed": (
        r"\bresum(?:e|es|ing) (?:normal |cruising |the |its |our |set )?speed\b",
        r"\bresume cruis(?:e|ing)\b", r"\bspeed back up\b", r"\baccelerate back\b",
        r"\breturn to the speed limit\b", r"\bmaintain(?:ing)? (?:the |its |our |a )?(?:current |set |steady |cruising )?speed\b",
        r"\bkeep cruising\b", r"\bcontinue at (?:the |a )?(?:set|steady|cruising|current) speed\b",
        r"\bproceed through\b", r"\bcontinue through\b", r"\bdrive on at\b", r"\baccelerate\b(?! past)",
    ),
}
LATERAL_PATTERNS: dict[str, tuple[str, ...]] = {
    "Lane Change": (
        rf"\blane change (?:to the )?{_DIR}\b", rf"\b{_DIR} lane change\b",
        rf"\bchange (?:lanes? )?(?:in)?to the {_DIR}(?: lane)?\b", rf"\bchange to the {_DIR} lane\b",
        rf"\b(?:move|switch|shift) (?:over )?in(?:to)? the {_DIR} lane\b", rf"\bswitch to the {_DIR} lane\b",
        rf"\bchange lanes? {_DIR}\b",
    ),
    "Nudge": (
        rf"\bnudge (?:slightly |a little |gently )?(?:to the |toward the |towards the )?{_DIR}\b",
        rf"\bshift(?:s|ing)? slightly (?:to the )?{_DIR}\b", rf"\bedge (?:slightly )?(?:to the )?{_DIR}\b",
        rf"\bveer slightly (?:to the )?{_DIR}\b", rf"\bbias (?:the car |the vehicle )?(?:to the |toward the )?{_DIR}\b",
    ),
    "Turn": (
        rf"\bturn {_DIR}\b", rf"\b(?:make|making|take|taking|complete|completing) (?:a|an|the) (?:protected |unprotected )?{_DIR} turn\b",
        rf"\bturn (?:to the )?{_DIR}\b",
    ),
    "Merge": (r"\bmerge (?:in)?to\b", r"\bmerge onto\b", r"\bmerge (?:in|left|right)\b"),
    "Split": (
        r"\btake (?:the|an) (?:exit|off-ramp|off ramp)\b", r"\bexit (?:onto|to|via) the\b", r"\bsplit (?:off|onto|to)\b",
        r"\bleave the (?:mainline|highway|freeway)\b",
    ),
    "Keep Lane": (
        r"\bkeep(?:s|ing)? (?:the |its |our |to the )?(?:current |same |ego )?lane\b",
        r"\bstay(?:s|ing)? in (?:the |its |our )?(?:current |same |ego )?lane\b", r"\blane keeping\b",
        r"\bcontinue in (?:the |its |our )?(?:current |same )?lane\b", r"\bhold (?:the |its |our )?lane\b",
    ),
}
_TAIL_RE = re.compile(r"(lateral|longitudinal) decision\s*:\s*([a-z/\- ]+?)\s*(?:[.;,]|$)")
_TAIL_LON_INV = {v: k for k, v in TAIL_LONGITUDINAL.items()}
_TAIL_LON_INV.update({"keep speed": None, "adapt speed": "Adapt Speed", "gap-search": "Gap-search",
                      "speed adaptation": "Adapt Speed", "overtake": "Pass/Overtake", "pass": "Pass/Overtake",
                      "resume": "Resume Speed", "resume speed": "Resume Speed", "keep distance": "Keep Distance"})
_TAIL_LAT_INV = {v: k for k, v in TAIL_LATERAL.items()}

# Critical-component words for parsing objects and signals out of free text.
OBJECT_WORDS: dict[str, tuple[str, ...]] = {
    "parked_car": ("parked car", "parked vehicle", "parked cars", "parked van", "double-parked"),
    "pedestrian": ("pedestrian", "pedestrians", "person", "jaywalker", "walker", "people"),
    "cyclist": ("cyclist", "cyclists", "bicyclist", "bicycle", "bike rider", "bike"),
    "truck": ("truck", "lorry", "semi"),
    "bus": ("bus", "coach"),
    "cone": ("cone", "cones", "traffic cones", "pylons"),
    "barrier": ("barrier", "barriers", "jersey barrier", "barricade", "barricades"),
    "debris": ("debris", "object on the road", "obstacle on the road", "fallen cargo"),
    "animal": ("animal", "deer", "dog"),
    "car": ("car", "cars", "sedan", "suv"),
    "vehicle": ("vehicle", "vehicles", "van"),
}
ROAD_EVENT_WORDS: dict[str, tuple[str, ...]] = {
    "construction_zone": ("construction", "work zone", "roadworks", "road works"),
    "intersection": ("intersection", "junction", "crossroads"),
    "crosswalk": ("crosswalk", "zebra crossing", "pedestrian crossing"),
    "stop_line": ("stop line",),
    "stop_sign": ("stop sign",),
    "yield_sign": ("yield sign",),
    "speed_limit_sign": ("speed limit",),
    "curve": ("curve", "bend", "curvy"),
    "on_ramp": ("on-ramp", "on ramp", "ramp"),
    "off_ramp": ("off-ramp", "off ramp", "exit"),
    "blocked_lane": ("blocked", "blocking"),
}


def _match_axis(text: str, patterns: dict[str, tuple[str, ...]], priority: tuple[str, ...]):
    """Return (decision, direction) of the highest-priority decision with a match, else (None, None)."""
    found: dict[str, str | None] = {}
    for name, pats in patterns.items():
        for p in pats:
            m = re.search(p, text)
            if m:
                d = m.groupdict().get("dir")
                if name not in found or (found[name] is None and d):
                    found[name] = d
    for name in priority:
        if name in found:
            return name, found[name]
    return None, None


def parse(text: str) -> CocRecord:
    """Read a CoC sentence back into a record. Decisions come first from a structured tail
    ("Lateral decision: …", "Longitudinal decision: …"), else from the verb-phrase bank. Unknown
    decision words give None. Objects, signal colours and road events are recognised by keyword."""
    if not isinstance(text, str):
        raise ValueError(f"parse expects a string, got {type(text).__name__}")
    t = " ".join(text.lower().replace("’", "'").split())
    lon = lat = dirn = None
    tail_lon_seen = tail_lat_seen = False
    body = t
    for axis, value in _TAIL_RE.findall(t):
        value = value.strip()
        if axis == "longitudinal":
            tail_lon_seen = True
            lon = _TAIL_LON_INV.get(value)
        else:
            tail_lat_seen = True
            m = re.fullmatch(r"(lane change|nudge|turn|merge|split|keep lane)(?: (?:to the )?(left|right))?", value)
            if m:
                lat = _TAIL_LAT_INV[m.group(1)]
                dirn = m.group(2)
    if tail_lon_seen or tail_lat_seen:
        body = _TAIL_RE.sub(" ", t)
    if not tail_lon_seen:
        lon, _ = _match_axis(body, LONGITUDINAL_PATTERNS, LONGITUDINAL_PRIORITY)
    if not tail_lat_seen:
        lat, dirn = _match_axis(body, LATERAL_PATTERNS, LATERAL_PRIORITY)
    if lat in DIRECTED_LATERAL and dirn is None:
        # A directed decision without its direction is not the decision we were asked for.
        lat = None
    if lat not in DIRECTED_LATERAL + ("Merge", "Split"):
        dirn = None

    objects = []
    rest = body
    for kind, words in OBJECT_WORDS.items():  # parked_car before car: consume the longer phrase
        for w in words:
            pat = rf"\b{re.escape(w)}\b"
            if re.search(pat, rest):
                objects.append(CriticalObject(kind=kind))
                rest = re.sub(pat, " ", rest)
                break
    signals = []
    m = re.search(r"\b(red|yellow|amber|green)(?:/red)?\s+(?:traffic\s+)?(?:light|signal)s?\b", body) or re.search(
        r"\b(?:light|signal)s?\b(?: [a-z]+){0,3}? (?:is|are|turns?|turned|has turned|just turned|shows?|showing) "
        r"(red|yellow|amber|green)\b", body)
    if m:
        colour = {"amber": "yellow"}.get(m.group(1), m.group(1))
        signals.append(SignalCue("traffic_light", colour))
    elif re.search(r"\b(?:traffic )?lights? (?:is |are )?(?:dark|out)\b|\bdark (?:traffic )?light", body):
        signals.append(SignalCue("traffic_light", "dark"))
    if re.search(r"\bstop sign\b", body):
        signals.append(SignalCue("stop_sign"))
    events = tuple(ev for ev, words in ROAD_EVENT_WORDS.items() if any(re.search(rf"\b{re.escape(w)}\b", body) for w in words))
    # a stated distance to the stop line ("the stop line 25 m ahead", "12 m before the stop line")
    # lets consistency check where the trajectory stops
    m = re.search(r"\bstop line(?: is)?(?: about| roughly)? (\d+(?:\.\d+)?) ?(?:m|meters|metres)\b", body) or \
        re.search(r"\b(\d+(?:\.\d+)?) ?(?:m|meters|metres) (?:ahead )?(?:to|before|from) the stop line\b", body)
    sl = float(m.group(1)) if m else None
    return CocRecord(longitudinal=lon, lateral=lat, lateral_direction=dirn, objects=tuple(objects),
                     signals=tuple(signals), road_events=events, stop_line_distance_m=sl)


# ----------------------------------------------------------------------------------------------
# Composition (writer side). The labeler's phrasing bank supplies the causes; the decision verb
# phrases live here so compose and parse stay in step.
# ----------------------------------------------------------------------------------------------
# Verb phrases per longitudinal decision. "{obj}" is the causal object noun phrase (may be empty).
LON_PHRASES: dict[str, tuple[str, ...]] = {
    "Stop": ("stop", "come to a stop", "come to a complete stop", "bring the car to a stop", "come to a full stop",
             "halt"),
    "Yield": ("yield", "give way", "yield and wait", "give way and wait"),
    "Pass/Overtake": ("overtake", "accelerate past", "overtake and pass"),
    "Gap-search": ("search for a gap", "look for a safe gap", "find a suitable gap", "adjust speed to fit into the gap"),
    "Keep Distance": ("keep a safe distance", "maintain a safe following distance", "keep distance",
                      "hold a safe gap", "keep a steady following distance"),
    "Adapt Speed": ("slow down", "reduce speed", "adapt speed", "ease off and slow down", "moderate speed",
                    "decelerate"),
    "Resume Speed": ("resume speed", "maintain speed", "resume normal speed", "keep cruising", "speed back up",
                     "accelerate back to the set speed"),
}
LAT_PHRASES: dict[str, tuple[str, ...]] = {
    "Lane Change": ("change to the {d} lane", "lane change to the {d}", "move into the {d} lane",
                    "switch to the {d} lane", "change lanes to the {d}"),
    "Nudge": ("nudge {d}", "nudge slightly to the {d}", "shift slightly {d}", "edge to the {d}", "nudge to the {d}"),
    "Turn": ("turn {d}", "make a {d} turn", "take the {d} turn", "complete the {d} turn"),
    "Merge": ("merge into the main lane", "merge onto the mainline", "merge into traffic"),
    "Split": ("take the exit", "take the off-ramp", "exit onto the ramp"),
    "Keep Lane": ("keep lane", "stay in the current lane", "keep the current lane", "stay in lane"),
}
CAUSE_LINKS = ("since", "because", "as", "given that")  # "due to" is added for noun causes


def lateral_phrase(lat: str, direction: str | None, rng: np.random.Generator) -> str:
    p = LAT_PHRASES[lat][int(rng.integers(len(LAT_PHRASES[lat])))]
    if "{d}" in p:
        if direction not in DIRECTIONS:
            raise ValueError(f"lateral decision {lat!r} needs a direction, got {direction!r}")
        p = p.format(d=direction)
    return p


def longitudinal_phrase(lon: str, rng: np.random.Generator) -> str:
    return LON_PHRASES[lon][int(rng.integers(len(LON_PHRASES[lon])))]


def action_phrase(record: CocRecord, rng: np.random.Generator) -> str:
    """The verb phrase for both decisions, e.g. "nudge left and slow down". Keep Lane is said only
    when there is no longitudinal decision or at random, as the released labels do."""
    lon, lat = record.longitudinal, record.lateral
    parts = []
    lat_p = lateral_phrase(lat, record.lateral_direction, rng) if lat else None
    lon_p = longitudinal_phrase(lon, rng) if lon else None
    if lat_p and lat != "Keep Lane":
        parts.append(lat_p)
        if lon_p:
            parts.append(lon_p)
    else:
        if lon_p:
            parts.append(lon_p)
        if lat_p:
            parts.append(lat_p)
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0]
    joiner = (" and ", ", ")[int(rng.integers(2))]
    return parts[0] + joiner + parts[1]


def structured_tail(record: CocRecord) -> str:
    """"Lateral decision: nudge left. Longitudinal decision: speed adaptation" (released style)."""
    out = []
    if record.lateral:
        lat = TAIL_LATERAL[record.lateral]
        if record.lateral_direction and record.lateral in DIRECTED_LATERAL:
            lat += " " + record.lateral_direction
        out.append(f"Lateral decision: {lat}")
    if record.longitudinal:
        out.append(f"Longitudinal decision: {TAIL_LONGITUDINAL[record.longitudinal]}")
    return ". ".join(out)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def compose(record: CocRecord, rng: np.random.Generator | int | None = None, cause: str | None = None,
            context: str | None = None) -> str:
    """One CoC sentence for ``record``.

    ``cause``: a clause giving the reason ("the light is red", "a pedestrian is crossing ahead");
    ``context``: a noun-phrase sentence describing the scene ("Construction zone ahead with
    narrowing lanes and cones on the right shoulder"). The labeler's phrasing bank produces both
    from the record; without them a minimal cause is derived here. Styles (chosen by ``rng``):
    action-since-cause, cause-so-action, context + structured tail.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if record.longitudinal is None and record.lateral is None:
        raise ValueError("cannot compose a CoC without any decision")
    act = action_phrase(record, rng)
    cause = cause or _default_cause(record)
    style = int(rng.integers(4)) if context else int(rng.integers(3))
    link = CAUSE_LINKS[int(rng.integers(len(CAUSE_LINKS)))]
    if style == 3 or (style == 2 and context):
        ctx = context or _cap(cause)
        return f"{_cap(ctx.rstrip('.'))}. {structured_tail(record)}"
    noun_cause = cause.startswith("of ")  # "of the red light": only "because of" / "due to" fit
    if noun_cause:
        link = ("because", "due to")[int(rng.integers(2))]
        cause_np = cause[3:]
        cause = cause if link == "because" else cause_np
        if style == 2:
            style = 1
    if style == 0 or not cause:
        return f"{_cap(act)} {link} {cause}." if cause else f"{_cap(act)}."
    if style == 1:
        lead = {"since": "Since", "because": "Because", "as": "As", "given that": "Given that", "due to": "Due to"}[link]
        return f"{lead} {cause}, {act}."
    return f"{_cap(cause)}, so {act}."


def _default_cause(record: CocRecord) -> str:
    for s in record.signals:
        if s.kind == "traffic_light" and s.colour in ("red", "yellow", "green"):
            return f"the light is {s.colour}"
        if s.kind == "stop_sign":
            return "there is a stop sign"
    if record.objects:
        o = record.objects[0]
        return f"of the {o.kind.replace('_', ' ')} {o.relation.replace('_', ' ')}"
    if record.road_events:
        return f"of the {record.road_events[0].replace('_', ' ')} ahead"
    return "the road ahead is clear"


# The decision classes of a CoC, the targets of an auxiliary classifier (model.modeling.DecisionHead):
# each longitudinal decision, then none; each (lateral decision, direction) `parse` can return, then none.
LONGITUDINAL_CLASSES: tuple[str | None, ...] = (*LONGITUDINAL, None)
LATERAL_CLASSES: tuple[tuple[str | None, str | None], ...] = (
    *((lat, d) for lat in DIRECTED_LATERAL for d in DIRECTIONS),
    *((lat, d) for lat in ("Merge", "Split") for d in (None, *DIRECTIONS)),
    ("Keep Lane", None),
    (None, None),
)


def decision_classes(record: CocRecord) -> tuple[int, int]:
    """(index in `LONGITUDINAL_CLASSES`, index in `LATERAL_CLASSES`) of a record's decisions."""
    lateral = (record.lateral, record.lateral_direction)
    if lateral not in LATERAL_CLASSES:
        raise ValueError(f"lateral decision {lateral} is not one of LATERAL_CLASSES (a directed decision needs its direction)")
    return LONGITUDINAL_CLASSES.index(record.longitudinal), LATERAL_CLASSES.index(lateral)


__all__ = [
    "LONGITUDINAL", "LATERAL", "DIRECTIONS", "DIRECTED_LATERAL", "INTERESTING_LONGITUDINAL", "INTERESTING_LATERAL",
    "SIGNAL_COLOURS", "OBJECT_KINDS", "VEHICLE_KINDS", "ROAD_EVENTS", "CriticalObject", "SignalCue", "CocRecord",
    "LONGITUDINAL_PATTERNS", "LATERAL_PATTERNS", "LON_PHRASES", "LAT_PHRASES", "parse", "compose", "action_phrase",
    "structured_tail", "lateral_phrase", "longitudinal_phrase", "LONGITUDINAL_CLASSES", "LATERAL_CLASSES",
    "decision_classes",
]
