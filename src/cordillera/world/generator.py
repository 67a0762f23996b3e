"""Seeded scenario generator and the fixed evaluation suites.

``make(family, seed)`` is pure and deterministic: the family's parameters are drawn with
``sample_params`` from a generator seeded by (seed, family), then ``family.make`` builds the
scenario. Scenario ids are ``f"{family}-{seed:05d}"``.

Seed ranges (disjoint by construction, documented here so they never collide):

=========  ===============  =====================================================
suite      seeds            families
=========  ===============  =====================================================
smoke      1000..           6 scenarios, 5 nominal families + 1 long-tail
standard   1000 .. 1007     every family × 8 seeds (14 × 8 = 112)
long_tail  2000 .. 2007     long-tail families × 8 seeds (5 × 8 = 40)
demo       3000 ..          6 hand-picked families incl. 2 long-tail
train      100000 .. 199999 every family, for data generation (``suite("train", n=...)``)
=========  ===============  =====================================================
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from types import ModuleType

import numpy as np

from cordillera.world.families import (
    car_following,
    construction_zone,
    cut_in,
    debris_in_lane,
    emergency_brake_lead,
    faulty_traffic_light,
    jaywalker,
    merge_on_ramp,
    pass_blocked,
    pedestrian_crosswalk,
    road_following,
    stop_sign,
    traffic_light,
    unprotected_left_turn,
)
from cordillera.world.scenario import Scenario

FAMILIES: dict[str, ModuleType] = {
    "road_following": road_following,
    "car_following": car_following,
    "traffic_light": traffic_light,
    "unprotected_left_turn": unprotected_left_turn,
    "stop_sign": stop_sign,
    "pedestrian_crosswalk": pedestrian_crosswalk,
    "jaywalker": jaywalker,
    "cut_in": cut_in,
    "pass_blocked": pass_blocked,
    "merge_on_ramp": merge_on_ramp,
    "construction_zone": construction_zone,
    "debris_in_lane": debris_in_lane,
    "emergency_brake_lead": emergency_brake_lead,
    "faulty_traffic_light": faulty_traffic_light,
}
NOMINAL = tuple(f for f, mod in FAMILIES.items() if mod.CATEGORY == "nominal")
LONG_TAIL = tuple(f for f, mod in FAMILIES.items() if mod.CATEGORY == "long_tail")

STANDARD_SEEDS = range(1000, 1008)
LONG_TAIL_SEEDS = range(2000, 2008)
DEMO_SEED = 3000
TRAIN_SEED0, TRAIN_SEED_END = 100_000, 200_000


def _module(family: str) -> ModuleType:
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown scenario family {family!r}; valid: {', '.join(FAMILIES)}") from None


def rng_for(family: str, seed: int) -> np.random.Generator:
    """The generator a scenario is drawn from: independent per (family, seed), stable across runs."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(family.encode())]))


def make_params(family: str, seed: int):
    return _module(family).sample_params(rng_for(family, seed))


def make(family: str, seed: int, params=None, traffic_mode: str = "reactive") -> Scenario:
    """Scenario ``f"{family}-{seed:05d}"``. ``params`` overrides the sampled parameters (the same
    generator still drives the background traffic). ``traffic_mode="log"`` replaces reactive actors
    with scripted replay tracks (see :mod:`cordillera.world.log_replay`)."""
    mod = _module(family)
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = rng_for(family, seed)
    sampled = mod.sample_params(rng)
    sc = mod.make(sampled if params is None else params, rng, scenario_id=f"{family}-{int(seed):05d}", seed=int(seed))
    if traffic_mode == "log":
        from cordillera.world.log_replay import scripted_log_replay

        sc = scripted_log_replay(sc)
    elif traffic_mode != "reactive":
        raise ValueError(f"traffic_mode must be 'reactive' or 'log', got {traffic_mode!r}")
    return sc


# ----------------------------------------------------------------------------------------------
# Suites
# ----------------------------------------------------------------------------------------------
def _smoke() -> list[tuple[str, int]]:
    return [("road_following", 1000), ("car_following", 1000), ("traffic_light", 1000),
            ("pedestrian_crosswalk", 1000), ("cut_in", 1000), ("construction_zone", 1000)]


def _standard() -> list[tuple[str, int]]:
    return [(f, s) for f in FAMILIES for s in STANDARD_SEEDS]


def _long_tail() -> list[tuple[str, int]]:
    return [(f, s) for f in LONG_TAIL for s in LONG_TAIL_SEEDS]


def _demo() -> list[tuple[str, int]]:
    return [(f, DEMO_SEED) for f in ("traffic_light", "unprotected_left_turn", "cut_in", "merge_on_ramp",
                                     "jaywalker", "construction_zone")]


def _train(n: int = 1400) -> list[tuple[str, int]]:
    fams = list(FAMILIES)
    if not 0 < n <= TRAIN_SEED_END - TRAIN_SEED0:
        raise ValueError(f"train suite size must be in 1..{TRAIN_SEED_END - TRAIN_SEED0}, got {n}")
    return [(fams[k % len(fams)], TRAIN_SEED0 + k) for k in range(n)]


SUITES = {"smoke": _smoke, "standard": _standard, "long_tail": _long_tail, "demo": _demo, "train": _train}


def suite(name: str, **kw) -> list[tuple[str, int]]:
    """(family, seed) pairs of a named suite; ``train`` takes ``n`` (default 1400)."""
    try:
        fn = SUITES[name]
    except KeyError:
        raise ValueError(f"unknown suite {name!r}; valid: {', '.join(SUITES)}") from None
    return fn(**kw)


def first_per_family(pairs: list[tuple[str, int]], n: int) -> list[tuple[str, int]]:
    """The first ``n`` (family, seed) pairs of each family, in the given order: a small set that
    still covers every family (e.g. a held-out open-loop set from ``suite("standard")``)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    seen: dict[str, int] = {}
    out = []
    for fam, seed in pairs:
        seen[fam] = seen.get(fam, 0) + 1
        if seen[fam] <= n:
            out.append((fam, seed))
    return out


def make_suite(name: str, **kw) -> list[Scenario]:
    return [make(f, s) for f, s in suite(name, **kw)]


def truncated(sc: Scenario, duration_s: float | None) -> Scenario:
    """``sc`` shortened to ``duration_s`` (on the 100 ms control grid; never lengthened); None: unchanged."""
    if duration_s is None:
        return sc
    d = int(round(duration_s * 10)) * 100_000
    if d <= 0:
        raise ValueError(f"duration_s must be >= 0.1, got {duration_s}")
    return replace(sc, duration_us=min(sc.duration_us, d), force_gt_duration_us=min(sc.force_gt_duration_us, d))


__all__ = ["FAMILIES", "NOMINAL", "LONG_TAIL", "SUITES", "STANDARD_SEEDS", "LONG_TAIL_SEEDS", "rng_for",
           "make_params", "make", "suite", "first_per_family", "make_suite", "truncated"]
