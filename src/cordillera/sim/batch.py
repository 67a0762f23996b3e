"""Batch runner: scenarios × rollouts, serially or through Ray, resumable, with AlpaSim outputs.

For every scenario the expert reference rollout is computed first (and cached under
``<out>/reference/<scene>.npz|json``); it drives the force-GT warm-up and is the ground truth of the
progress / distance metrics. Then each policy rollout runs, its metrics are computed and written,
and finally the whole run is aggregated (``metrics.aggregate``). Layout (spec/alpasim.md §5.2)::

    <out>/run_metadata.yaml
    <out>/reference/<scene_id>.npz, <scene_id>.json          expert reference (cache)
    <out>/rollouts/<scene_id>/scenario.json                   the scenario (Scenario.to_json)
    <out>/rollouts/<scene_id>/<rollout_id>/metrics.parquet   long metrics table
                                          /rollout.npz|json  the executed rollout: states, signals and
                                                             per step the plan (x, y, yaw), CoC, decisions,
                                                             timings (no images)
                                          /{scene}_{rollout}_camera_front_wide_120fov_default.mp4  (--video)
                                          /status.json       status, error, index, seed, wall time
                                          /_complete         written last; such rollouts are skipped on rerun
    <out>/aggregate/{metrics_unprocessed.parquet, metrics_results.parquet, metrics_results.txt,
                     results-summary.json}

Rollout ids are uuid5 of (scenario id, policy name, index, seed), so a rerun into the same
directory finds and skips what is already complete. Failed rollouts (policy errors, simulator
errors, a broken reference) are recorded and the batch goes on; they have no ``_complete`` marker
and are retried on the next run. Work runs as Ray *tasks* (never actors: two 1-CPU actors on a
2-core machine starve later tasks, spec/environment.md §8), or in-process when ``workers == 1``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cordillera.metrics.aggregate import (
    COMPLETE_MARKER,
    STATUS_JSON,
    AggregateResult,
    AggregationConfig,
    RolloutStatus,
    aggregate,
    atomic_write_bytes,
    atomic_write_text,
    new_run_identity,
    read_run_metadata,
    rollout_dir,
    write_aggregate,
    write_rollout_metrics,
    write_run_metadata,
)
from cordillera.metrics.closedloop import MetricsConfig, compute_metrics, metrics_to_frame
from cordillera.sim.types import Rollout, StepRecord
from cordillera.world.scenario import AgentState, Scenario

_ID_NAMESPACE = uuid.UUID("6f0d2a8e-3c51-4f6b-9a47-2b1f0c9d7e15")  # fixed: rollout ids are stable across runs
POLICY_NAMES = ("expert", "constant_velocity", "route_follower")
_STATE_FIELDS = ("x_m", "y_m", "yaw_rad", "speed_mps", "accel_mps2", "yaw_rate_radps", "z_m", "lat_speed_mps",
                 "steering_rad", "visible")


# ----------------------------------------------------------------------------------------------
# Picklable policy factories
# ----------------------------------------------------------------------------------------------
def make_policy(name: str, **kwargs):
    """One of the built-in policies by name (explicit dict, no registry)."""
    def expert(**kw):
        from cordillera.sim.expert import ExpertPolicy

        return ExpertPolicy(**kw)

    def constant_velocity(**kw):
        from cordillera.sim.policies.baselines import ConstantVelocityPolicy

        return ConstantVelocityPolicy(**kw)

    def route_follower(**kw):
        from cordillera.sim.policies.baselines import RouteFollowerPolicy

        return RouteFollowerPolicy(**kw)

    table = {"expert": expert, "constant_velocity": constant_velocity, "route_follower": route_follower}
    if name not in table:
        raise ValueError(f"unknown policy {name!r}; valid: {', '.join(table)}")
    return table[name](**kwargs)


@dataclass(frozen=True)
class PolicyFactory:
    """A picklable zero-argument factory for a built-in policy (what Ray ships to workers)."""

    name: str
    kwargs: tuple[tuple[str, object], ...] = ()

    def __post_init__(self):
        if self.name not in POLICY_NAMES:
            raise ValueError(f"unknown policy {self.name!r}; valid: {', '.join(POLICY_NAMES)}")

    def __call__(self):
        return make_policy(self.name, **dict(self.kwargs))


def expert_reference_factory():
    """The default reference: the privileged expert (imported lazily)."""
    from cordillera.sim.expert import ExpertPolicy

    return ExpertPolicy()


def _factory_name(factory) -> str:
    name = getattr(factory, "policy_name", None) or getattr(factory, "name", None)
    if isinstance(name, str) and name:
        return name
    return getattr(factory, "__name__", type(factory).__name__)


def rollout_id_for(scenario_id: str, policy_name: str, index: int, seed: int) -> str:
    """Deterministic rollout id, so reruns into the same directory resume."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{scenario_id}|{policy_name}|{int(index)}|{int(seed)}"))


# ----------------------------------------------------------------------------------------------
# Rollout files (ego + actors + signals + plans with CoC/decisions/timings; images are not stored)
# ----------------------------------------------------------------------------------------------
def _jsonable(x):
    """Plain JSON types for decisions / timings (numpy scalars, tuples, nested dicts)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    if x is None or isinstance(x, (str, int)):
        return x
    return str(x)


def _plan_arrays(rollout: Rollout) -> dict[str, np.ndarray]:
    """Per step the plan as float32 ``plan_xyyaw`` (T, P, 3) [m, m, rad] in the rig frame at the
    step, ``plan_dt_us`` (T, P) int32 offsets from the step time (-1 = no pose), and, when any plan
    has sampled alternatives, ``plan_alt_xy`` (T, K, P, 2) float32. NaN pads missing poses."""
    plans = [s.plan for s in rollout.steps]
    n_p = max((len(p.t_us) for p in plans if p is not None), default=0)
    n_k = max((len(p.alternatives) for p in plans if p is not None), default=0)
    T = len(plans)
    xyyaw = np.full((T, n_p, 3), np.nan, np.float32)
    dt = np.full((T, n_p), -1, np.int32)
    alt = np.full((T, n_k, n_p, 2), np.nan, np.float32) if n_k else None
    for i, (st, p) in enumerate(zip(rollout.steps, plans)):
        if p is None or len(p.t_us) == 0:
            continue
        n = len(p.t_us)
        xyyaw[i, :n, :2] = np.asarray(p.xyz_rig, np.float64)[:, :2]
        xyyaw[i, :n, 2] = np.asarray(p.yaw_rig, np.float64)
        dt[i, :n] = np.asarray(p.t_us, np.int64) - st.t_us
        for k, (axyz, _ayaw) in enumerate(p.alternatives):
            a = np.asarray(axyz, np.float64)[:n_p, :2]
            alt[i, k, : len(a)] = a
    out = {"plan_xyyaw": xyyaw, "plan_dt_us": dt}
    if alt is not None:
        out["plan_alt_xy"] = alt
    return out


def _plan_meta(plan) -> dict | None:
    if plan is None:
        return None
    return {"coc": plan.coc, "decisions": _jsonable(plan.decisions), "timing_ms": _jsonable(plan.timing_ms),
            "warming_up": bool(plan.warming_up), "n_alternatives": len(plan.alternatives),
            "planned_at_us": None if plan.planned_at_us is None else int(plan.planned_at_us)}


def _plans_from(t_us: np.ndarray, arrays: dict, metas: list) -> list:
    from cordillera.sim.types import Plan

    xyyaw, dt, alt = arrays["plan_xyyaw"], arrays["plan_dt_us"], arrays.get("plan_alt_xy")
    plans = []
    for i, m in enumerate(metas):
        if m is None:
            plans.append(None)
            continue
        n = int(np.sum(dt[i] >= 0))
        a = xyyaw[i, :n].astype(np.float64)
        xyz = np.column_stack([a[:, :2], np.zeros(n)])
        alts = ()
        if alt is not None:
            alts = tuple((np.column_stack([alt[i, k, :n].astype(np.float64), np.zeros(n)]), np.zeros(n))
                         for k in range(int(m.get("n_alternatives", 0))))
        plans.append(Plan(t_us=int(t_us[i]) + dt[i, :n].astype(np.int64), xyz_rig=xyz, yaw_rig=a[:, 2].copy(),
                          alternatives=alts, coc=m.get("coc"), decisions=m.get("decisions"),
                          timing_ms=dict(m.get("timing_ms") or {}), warming_up=bool(m.get("warming_up", False)),
                          planned_at_us=m.get("planned_at_us")))
    return plans


def _states_array(states: list[AgentState | None]) -> np.ndarray:
    out = np.full((len(states), len(_STATE_FIELDS)), np.nan)
    for i, s in enumerate(states):
        if s is not None:
            out[i] = [float(getattr(s, f)) for f in _STATE_FIELDS]
    return out


def _state_from(row: np.ndarray) -> AgentState:
    d = dict(zip(_STATE_FIELDS, row.tolist()))
    d["visible"] = bool(d["visible"])
    return AgentState(**d)


def save_rollout(path_stem: str | Path, rollout: Rollout, extra: dict | None = None) -> None:
    """``<stem>.npz`` (ego (T, F) and actors (T, A, F) state arrays, plans as float32 arrays, see
    ``_plan_arrays``) + ``<stem>.json`` (metadata, actor ids, signals, per step the plan's CoC,
    decisions, timings and the step's timing breakdown). Frames are not stored."""
    stem = Path(path_stem)
    actor_ids = sorted({aid for s in rollout.steps for aid in s.actors})
    t = rollout.t_us()
    ego = _states_array([s.ego for s in rollout.steps])
    actors = np.full((len(t), len(actor_ids), len(_STATE_FIELDS)), np.nan)
    for j, aid in enumerate(actor_ids):
        actors[:, j] = _states_array([s.actors.get(aid) for s in rollout.steps])
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, t_us=t, ego=ego, actors=actors, force_gt=np.array([s.force_gt for s in rollout.steps]),
                        **_plan_arrays(rollout))
    meta = {
        "schema": "cordillera.rollout/1",
        "scenario_id": rollout.scenario_id, "rollout_id": rollout.rollout_id, "policy_name": rollout.policy_name,
        "seed": rollout.seed, "status": rollout.status, "error": rollout.error,
        "force_gt_end_us": rollout.force_gt_end_us, "wall_time_s": rollout.wall_time_s,
        "state_fields": list(_STATE_FIELDS), "actor_ids": actor_ids,
        "signals": [s.signals for s in rollout.steps], "plans": [_plan_meta(s.plan) for s in rollout.steps],
        "step_timing_ms": [_jsonable(s.timing_ms) for s in rollout.steps], **(extra or {}),
    }
    atomic_write_bytes(stem.with_suffix(".npz"), buf.getvalue())
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta))


def load_rollout(path_stem: str | Path) -> tuple[Rollout, dict]:
    stem = Path(path_stem)
    meta = json.loads(stem.with_suffix(".json").read_text())
    if meta.get("schema") != "cordillera.rollout/1":
        raise ValueError(f"{stem}.json is not a cordillera rollout (schema={meta.get('schema')!r})")
    with np.load(stem.with_suffix(".npz")) as z:
        t, ego, actors, force_gt = z["t_us"], z["ego"], z["actors"], z["force_gt"]
        plan_arrays = {k: z[k] for k in ("plan_xyyaw", "plan_dt_us", "plan_alt_xy") if k in z.files}
    ids = meta["actor_ids"]
    # files written before plans were stored have neither the arrays nor the "plans" list
    plans = (_plans_from(t, plan_arrays, meta["plans"]) if "plans" in meta and "plan_xyyaw" in plan_arrays
             else [None] * len(t))
    timings = meta.get("step_timing_ms") or [{}] * len(t)
    steps = []
    for i in range(len(t)):
        acts = {aid: _state_from(actors[i, j]) for j, aid in enumerate(ids) if not np.isnan(actors[i, j, 0])}
        steps.append(StepRecord(t_us=int(t[i]), ego=_state_from(ego[i]), actors=acts, signals=dict(meta["signals"][i]),
                                plan=plans[i], force_gt=bool(force_gt[i]), timing_ms=dict(timings[i] or {})))
    ro = Rollout(scenario_id=meta["scenario_id"], rollout_id=meta["rollout_id"], policy_name=meta["policy_name"],
                 seed=int(meta["seed"]), steps=steps, status=meta["status"], error=meta["error"],
                 force_gt_end_us=int(meta["force_gt_end_us"]), wall_time_s=float(meta["wall_time_s"]))
    return ro, meta


# ----------------------------------------------------------------------------------------------
# Rollout videos (AlpaSim's per-rollout MP4, spec/alpasim.md §4.5)
# ----------------------------------------------------------------------------------------------
VIDEO_CAMERA = "camera_front_wide_120fov"
SCENARIO_JSON = "scenario.json"  # rollouts/<scene_id>/scenario.json
# per-step metrics shown in the video's panel (flags first, then distances)
VIDEO_PANEL_METRICS = ("collision_front", "collision_lateral", "collision_rear", "offroad", "wrong_lane",
                       "red_light_violation", "dist_to_gt_trajectory", "min_time_to_collision_s")


def default_renderer_factory(scenario: Scenario):
    """The renderer used for videos when the batch is given none (GL when EGL works, else OpenCV)."""
    from cordillera.render import make_renderer

    return make_renderer(scenario)


def video_file(out_dir: str | Path, scene_id: str, rollout_id: str, camera: str = VIDEO_CAMERA) -> Path:
    """``rollouts/<scene>/<rollout>/{scene}_{rollout}_{camera}_default.mp4``."""
    return rollout_dir(out_dir, scene_id, rollout_id) / f"{scene_id}_{rollout_id}_{camera}_default.mp4"


def decision_cause(decisions: dict | None) -> str | None:
    """The "why" of a plan's ``decisions``: causal object and signal, e.g.
    ``"truck oncoming0 (crossing, 63 m) · light light_W red"``."""
    if not decisions:
        return None
    parts = []
    obj = decisions.get("causal_object")
    if isinstance(obj, dict):
        what = " ".join(str(obj[k]) for k in ("kind", "id") if obj.get(k))
        how = [str(obj["relation"])] if obj.get("relation") else []
        if isinstance(obj.get("distance_m"), (int, float)):
            how.append(f"{obj['distance_m']:.0f} m")
        parts.append(what + (f" ({', '.join(how)})" if how else ""))
    elif obj:
        parts.append(str(obj))
    sig = decisions.get("signal")
    if isinstance(sig, dict) and sig.get("id"):
        parts.append(f"light {sig['id']} {sig.get('state', '?')}")
    return " · ".join(parts) or None


def decision_text(decisions: dict | None) -> str | None:
    """One line from a plan's ``decisions`` (the rule-based expert writes decisions, not CoC):
    ``"Stop · Keep Lane — because of pedestrian ped_0 (crossing, 12 m) · light light_W red"``."""
    if not decisions:
        return None
    lon, lat = decisions.get("longitudinal"), decisions.get("lateral")
    if lat and decisions.get("lateral_direction"):
        lat = f"{lat} {decisions['lateral_direction']}"
    text = " · ".join(str(x) for x in (lon, lat) if x)
    cause = decision_cause(decisions)
    if cause:
        text += f" — because of {cause}" if text else cause
    return text or None


def display_coc(plan) -> str | None:
    """What a video/report shows as the step's reasoning: the CoC, else the expert's decisions."""
    if plan is None:
        return None
    if plan.coc:
        return plan.coc
    d = decision_text(plan.decisions)
    return f"[decision] {d}" if d else None


def _per_step(rows, t_us: np.ndarray, names) -> dict[str, np.ndarray]:
    """Metric rows -> per-step arrays aligned on the rollout's step times (NaN where absent/invalid)."""
    out = {}
    by_name = {r.name: r for r in rows or ()}
    for name in names:
        r = by_name.get(name)
        if r is None:
            continue
        a = np.full(len(t_us), np.nan)
        idx = np.searchsorted(t_us, r.timestamps_us)
        ok = (idx < len(t_us)) & r.valid
        ok[ok] &= t_us[idx[ok]] == r.timestamps_us[ok]
        a[idx[ok]] = r.values[ok]
        out[name] = a
    return out


def write_rollout_video(rollout: Rollout, scenario: Scenario, renderer, out_dir: str | Path, rows=None,
                        reference: Rollout | None = None, camera: str = VIDEO_CAMERA) -> Path:
    """Render ``camera`` for every step (or use the frames the run kept) and write the AlpaSim-layout
    MP4 (camera + projected plan + CoC, BEV, metrics panel) into the rollout directory. Frames are
    streamed into the encoder one at a time; frames kept by the run are dropped afterwards."""
    from dataclasses import replace

    from cordillera.render.video import rollout_video

    steps = [replace(s, plan=replace(s.plan, coc=display_coc(s.plan))) if s.plan is not None else s
             for s in rollout.steps]
    shown = Rollout(rollout.scenario_id, rollout.rollout_id, rollout.policy_name, rollout.seed, steps,
                    rollout.status, rollout.error, rollout.force_gt_end_us, rollout.wall_time_s)
    kept = all(s.frames is not None and camera in s.frames for s in steps)
    if not kept and renderer is None:
        raise ValueError(f"no renderer and no stored {camera} frames for the video of {rollout.rollout_id}")
    panel = _per_step(rows, rollout.t_us(), VIDEO_PANEL_METRICS)
    gt = reference.ego_xy_yaw()[:, :2] if reference is not None and reference.steps else None
    path = video_file(out_dir, rollout.scenario_id, rollout.rollout_id, camera)
    rollout_video(shown, scenario, None if kept else renderer, path, camera=camera, metrics=panel,
                  rig=getattr(renderer, "rig", None), gt_xy=gt)
    for s in rollout.steps:
        s.frames = None
    return path


def _scenario_hash(scenario: Scenario) -> str:
    return hashlib.sha256(scenario.to_json().encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# The two task bodies (run in-process or as Ray tasks)
# ----------------------------------------------------------------------------------------------
def _default_run_fn(scenario, policy, config, renderer, rollout_id, seed, reference) -> Rollout:
    from cordillera.sim.runtime import run_rollout

    return run_rollout(scenario, policy, config, renderer, rollout_id=rollout_id, seed=seed, reference=reference)


def _err(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


def reference_task(scenario: Scenario, reference_factory, config, out_dir: str, seed: int,
                   run_fn=None) -> tuple[Rollout | None, str | None, bool]:
    """(reference rollout | None, error | None, from_cache). Never raises. The reference (the
    privileged expert) needs no images, so it runs without cameras even when the policy's config
    renders them (it gets no renderer)."""
    stem = Path(out_dir) / "reference" / scenario.id
    if getattr(config, "cameras", ()) or getattr(config, "keep_images", False):
        from dataclasses import replace

        config = replace(config, cameras=(), keep_images=False)
    key = {"scenario_hash": _scenario_hash(scenario), "reference": _factory_name(reference_factory), "seed": int(seed),
           "config": repr(config)}
    try:
        if stem.with_suffix(".json").exists() and stem.with_suffix(".npz").exists():
            ro, meta = load_rollout(stem)
            if all(meta.get(k) == v for k, v in key.items()) and not ro.failed:
                return ro, None, True
    except Exception:  # noqa: BLE001 - a corrupt cache is recomputed
        pass
    try:
        run = run_fn or _default_run_fn
        ro = run(scenario, reference_factory(), config, None, f"reference-{scenario.id}", seed, None)
    except Exception as e:  # noqa: BLE001 - a broken scenario must not stop the batch
        return None, _err(e), False
    if ro.failed:
        return None, ro.error or "reference rollout failed", False
    try:
        save_rollout(stem, ro, extra=key)
    except Exception:  # noqa: BLE001 - caching is best effort
        pass
    return ro, None, False


@dataclass(frozen=True)
class RolloutOutcome:
    clipgt_id: str
    rollout_id: str
    rollout_index: int
    status: str  # "ok" | "failed"
    error: str | None = None
    resumed: bool = False
    wall_time_s: float = 0.0


@dataclass(frozen=True)
class _Job:
    scenario: Scenario
    index: int
    seed: int
    rollout_id: str
    policy_name: str


def rollout_task(job: _Job, policy_factory, config, reference: tuple, out_dir: str, run_uuid: str, run_name: str,
                 metrics_config: MetricsConfig, renderer_factory=None, run_fn=None, video: bool = False) -> RolloutOutcome:
    """Run one rollout, compute and write its metrics (and its MP4 when ``video``); never raises
    (failures are recorded). A failed video keeps the rollout's status and metrics but records
    ``video_error`` and leaves the rollout incomplete, so a rerun retries it."""
    c0 = time.perf_counter()
    sc = job.scenario
    d = rollout_dir(out_dir, sc.id, job.rollout_id)
    ref_rollout, ref_error = reference[0], reference[1]
    status, error, video_error = "ok", None, None
    renderer = None
    try:
        (d / COMPLETE_MARKER).unlink(missing_ok=True)
        if ref_error is not None:
            raise RuntimeError(f"reference (expert) rollout failed: {ref_error}")
        scenario_json = d.parent / SCENARIO_JSON  # one per scene: reports read conditions and the map
        if not scenario_json.exists():
            atomic_write_text(scenario_json, sc.to_json())
        policy = policy_factory()
        renderer = renderer_factory(sc) if renderer_factory is not None else None
        ro = (run_fn or _default_run_fn)(sc, policy, config, renderer, job.rollout_id, job.seed, ref_rollout)
        save_rollout(d / "rollout", ro)
        if ro.failed:
            status, error = "failed", ro.error or "rollout failed"
        else:
            rows = compute_metrics(ro, sc, ref_rollout, metrics_config)
            write_rollout_metrics(out_dir, metrics_to_frame(rows, sc.id, job.rollout_id, run_uuid, run_name))
            if video:
                try:
                    write_rollout_video(ro, sc, renderer, out_dir, rows, ref_rollout)
                except Exception as e:  # noqa: BLE001 - the metrics stand; the video is retried on rerun
                    video_error = _err(e)
    except Exception as e:  # noqa: BLE001 - recorded, the batch goes on
        status, error = "failed", _err(e)
    finally:
        if renderer is not None and hasattr(renderer, "close"):
            try:
                renderer.close()
            except Exception:  # noqa: BLE001 - releasing GL objects is best effort
                pass
    wall = time.perf_counter() - c0
    st = RolloutStatus(sc.id, job.rollout_id, job.index, status, error, run_uuid, run_name, job.policy_name, job.seed, wall)
    extra = {"family": sc.family, "category": sc.category}
    if video_error is not None:
        extra["video_error"] = video_error
    atomic_write_text(d / STATUS_JSON, json.dumps({**st.to_dict(), **extra}))
    if status == "ok" and video_error is None:
        atomic_write_text(d / COMPLETE_MARKER, "")
    return RolloutOutcome(sc.id, job.rollout_id, job.index, status, error, False, wall)


def _resumed_outcome(out_dir: str, clip: str, rid: str, index: int, video: bool = False) -> RolloutOutcome | None:
    d = rollout_dir(out_dir, clip, rid)
    if not (d / COMPLETE_MARKER).exists() or not (d / STATUS_JSON).exists():
        return None
    if video and not video_file(out_dir, clip, rid).exists():
        return None
    try:
        st = json.loads((d / STATUS_JSON).read_text())
    except json.JSONDecodeError:
        return None
    if st.get("status") != "ok" or not (d / "metrics.parquet").exists():
        return None
    return RolloutOutcome(clip, rid, index, "ok", None, True, float(st.get("wall_time_s", 0.0)))


# ----------------------------------------------------------------------------------------------
# The batch
# ----------------------------------------------------------------------------------------------
@dataclass(eq=False)
class BatchResult:
    out_dir: Path
    run_uuid: str
    run_name: str
    policy_name: str
    outcomes: list[RolloutOutcome]
    aggregate: AggregateResult
    summary_text: str
    wall_time_s: float
    broken: dict[str, str] = field(default_factory=dict)  # scenario id -> error of scenarios that could not run

    @property
    def n_failed(self) -> int:
        return sum(o.status != "ok" for o in self.outcomes)

    @property
    def n_resumed(self) -> int:
        return sum(o.resumed for o in self.outcomes)


def _ray_env_defaults() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # spec/environment.md §8
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # binds to 127.0.0.1
    src = str(Path(__file__).resolve().parents[2])  # workers must import cordillera
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if src not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([src, *paths])


POLICY_FINGERPRINT = "policy_fingerprint.txt"


def _drop_stale_rollouts(out: Path, policy_factory, progress: bool) -> None:
    """Resume only what the same policy wrote. A factory with a ``fingerprint()`` (e.g. a model
    checkpoint's weights hash) is recorded in ``out``; when it changed, the old rollouts are
    removed instead of being reported as this policy's."""
    fp_fn = getattr(policy_factory, "fingerprint", None)
    if not callable(fp_fn):
        return
    fp, f = str(fp_fn()), out / POLICY_FINGERPRINT
    old = f.read_text().strip() if f.exists() else None
    if old != fp and (out / "rollouts").exists():  # no record: written by an unknown version
        if progress:
            print(f"{out}: rollouts were written by another version of the policy "
                  f"({(old or 'unrecorded')[:12]} ≠ {fp[:12]}); re-running")
        shutil.rmtree(out / "rollouts")
    atomic_write_text(f, fp + "\n")


def run_batch(scenarios: list[Scenario], policy_factory: Callable, out_dir: str | Path, rollouts_per_scenario: int = 1,
              workers: int | None = None, address: str | None = None, config=None,
              reference_factory: Callable | None = expert_reference_factory, run_name: str | None = None,
              progress: bool = True, *, seed: int = 0, policy_name: str | None = None,
              metrics_config: MetricsConfig = MetricsConfig(), aggregation_config: AggregationConfig = AggregationConfig(),
              renderer_factory: Callable | None = None, run_fn: Callable | None = None,
              broken: dict[str, str] | None = None, test_suite_id: str | None = None,
              description: str = "", video: bool = False) -> BatchResult:
    """Run ``rollouts_per_scenario`` rollouts of ``policy_factory()`` on every scenario and write
    AlpaSim's outputs to ``out_dir``.

    ``config`` is a ``sim.runtime.SimConfig`` (default ``SimConfig()``); ``reference_factory``
    builds the reference policy (None: no reference — force-GT and GT use the route at the start
    speed); ``workers=1`` runs in-process, otherwise Ray tasks (``address`` joins an existing
    cluster); rollout ``i`` uses seed ``seed + i``. ``run_fn(scenario, policy, config, renderer,
    rollout_id, seed, reference) -> Rollout`` replaces the simulator (tests). ``broken`` lists
    scenario ids that could not even be built (recorded as failed rollouts). ``video`` writes each
    rollout's front-wide MP4 (``write_rollout_video``), rendering with ``renderer_factory`` or, if
    None, ``default_renderer_factory``. Factories and ``run_fn`` must be picklable for Ray
    (top-level functions or small dataclasses)."""
    c0 = time.perf_counter()
    if rollouts_per_scenario < 1:
        raise ValueError(f"rollouts_per_scenario must be >= 1, got {rollouts_per_scenario}")
    ids = [s.id for s in scenarios]
    if len(set(ids)) != len(ids):
        raise ValueError(f"scenario ids must be unique, got duplicates in {ids}")
    if config is None:
        from cordillera.sim.runtime import SimConfig

        config = SimConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pname = policy_name or _factory_name(policy_factory)
    if video and renderer_factory is None:
        renderer_factory = default_renderer_factory

    meta = read_run_metadata(out)
    if meta and meta.get("run_uuid"):
        run_uuid, rname = meta["run_uuid"], run_name or meta.get("run_name") or f"LR-{meta['run_uuid']}"
    else:
        run_uuid, rname = new_run_identity()
        rname = run_name or rname
    write_run_metadata(out, run_uuid, rname, description=description or f"policy={pname}", test_suite_id=test_suite_id,
                       run_args=[f"policy={pname}", f"rollouts={rollouts_per_scenario}", f"seed={seed}"])

    _drop_stale_rollouts(out, policy_factory, progress)
    jobs = [_Job(sc, i, seed + i, rollout_id_for(sc.id, pname, i, seed + i), pname)
            for sc in scenarios for i in range(rollouts_per_scenario)]
    outcomes: dict[str, RolloutOutcome] = {}
    todo: list[_Job] = []
    for j in jobs:
        r = _resumed_outcome(str(out), j.scenario.id, j.rollout_id, j.index, video)
        if r is not None:
            outcomes[j.rollout_id] = r
        else:
            todo.append(j)
    broken = dict(broken or {})
    for sid, err in broken.items():
        for i in range(rollouts_per_scenario):
            rid = rollout_id_for(sid, pname, i, seed + i)
            st = RolloutStatus(sid, rid, i, "failed", f"scenario could not be built: {err}", run_uuid, rname, pname, seed + i)
            atomic_write_text(rollout_dir(out, sid, rid) / STATUS_JSON, json.dumps(st.to_dict()))
            outcomes[rid] = RolloutOutcome(sid, rid, i, "failed", st.error)

    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    if n_workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    args = dict(policy_factory=policy_factory, config=config, out_dir=str(out), run_uuid=run_uuid, run_name=rname,
                metrics_config=metrics_config, renderer_factory=renderer_factory, run_fn=run_fn, video=video)
    with _progress_bar(progress, len(jobs), len(jobs) - len(todo)) as advance:
        if todo and n_workers == 1 and address is None:
            _run_serial(todo, reference_factory, seed, args, outcomes, advance)
        elif todo:
            _run_ray(todo, reference_factory, seed, args, outcomes, advance, n_workers, address)

    ordered = [outcomes[j.rollout_id] for j in jobs] + [o for o in outcomes.values()
                                                          if o.clipgt_id in broken]
    ordered = list({o.rollout_id: o for o in ordered}.values())
    agg = _aggregate_planned(out, ordered, aggregation_config)
    families = {sc.id: sc.family for sc in scenarios} | {sid: sid.rsplit("-", 1)[0] for sid in broken}
    wall = time.perf_counter() - c0
    text = summary_table(agg, families, pname, rname, ordered, wall)
    return BatchResult(out, run_uuid, rname, pname, ordered, agg, text, wall, broken)


def _run_serial(todo, reference_factory, seed, args, outcomes, advance) -> None:
    refs: dict[str, tuple] = {}
    for j in todo:
        sid = j.scenario.id
        if sid not in refs:
            refs[sid] = ((None, None, False) if reference_factory is None else
                         reference_task(j.scenario, reference_factory, args["config"], args["out_dir"], seed, args["run_fn"]))
        o = rollout_task(j, reference=refs[sid], **args)
        outcomes[j.rollout_id] = o
        advance(o)


def _run_ray(todo, reference_factory, seed, args, outcomes, advance, n_workers, address) -> None:
    _ray_env_defaults()
    import ray

    started = False
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=n_workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        started = True
    try:
        ref_remote = ray.remote(num_cpus=1, max_retries=0)(reference_task)
        roll_remote = ray.remote(num_cpus=1, max_retries=0)(rollout_task)
        refs: dict[str, object] = {}
        pending = {}
        for j in todo:
            sid = j.scenario.id
            if sid not in refs:
                refs[sid] = (ray.put((None, None, False)) if reference_factory is None else
                             ref_remote.remote(j.scenario, reference_factory, args["config"], args["out_dir"], seed, args["run_fn"]))
            pending[roll_remote.remote(j, reference=refs[sid], **args)] = j
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for r in done:
                j = pending.pop(r)
                try:
                    o = ray.get(r)
                except Exception as e:  # noqa: BLE001 - a worker died; record and continue
                    o = RolloutOutcome(j.scenario.id, j.rollout_id, j.index, "failed", f"ray task failed: {_err(e)}")
                    st = RolloutStatus(j.scenario.id, j.rollout_id, j.index, "failed", o.error, args["run_uuid"],
                                       args["run_name"], j.policy_name, j.seed)
                    atomic_write_text(rollout_dir(args["out_dir"], j.scenario.id, j.rollout_id) / STATUS_JSON,
                                      json.dumps(st.to_dict()))
                outcomes[j.rollout_id] = o
                advance(o)
    finally:
        if started:
            ray.shutdown()


class _progress_bar:
    """rich progress over rollouts (resumed ones count as done from the start)."""

    def __init__(self, enabled: bool, total: int, done: int):
        self.enabled, self.total, self.done = enabled, total, done
        self._p = None

    def __enter__(self):
        if not self.enabled:
            return lambda o: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._p = Progress(TextColumn("[bold]rollouts"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                           TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
        self._p.start()
        self._task = self._p.add_task("rollouts", total=self.total, completed=self.done, info=f"{self.done} resumed")
        self._failed = 0

        def advance(o: RolloutOutcome):
            self._failed += o.status != "ok"
            self._p.update(self._task, advance=1, info=f"{self._failed} failed · last {o.clipgt_id}")

        return advance

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.stop()
        return False


def _aggregate_planned(out: Path, outcomes: list[RolloutOutcome], cfg: AggregationConfig) -> AggregateResult:
    """Aggregate exactly the planned rollouts of this batch (other runs in the same directory are ignored)."""
    import polars as pl

    frames, statuses = [], []
    for o in outcomes:
        d = rollout_dir(out, o.clipgt_id, o.rollout_id)
        st_path = d / STATUS_JSON
        if st_path.exists():
            statuses.append(RolloutStatus.from_dict(json.loads(st_path.read_text())))
        else:
            statuses.append(RolloutStatus(o.clipgt_id, o.rollout_id, o.rollout_index, o.status, o.error))
        if o.status == "ok" and (d / "metrics.parquet").exists():
            frames.append(pl.read_parquet(d / "metrics.parquet"))
    if frames:
        long_df = pl.concat(frames, how="vertical")
    else:
        from cordillera.metrics.aggregate import read_log_dir

        long_df = read_log_dir(out / "__none__")[0]
    result = aggregate(long_df, statuses, cfg)
    write_aggregate(out, long_df, result)
    return result


# ----------------------------------------------------------------------------------------------
# One-screen summary
# ----------------------------------------------------------------------------------------------
def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and np.isnan(x))]
    return float(np.mean(xs)) if xs else float("nan")


def summary_table(agg: AggregateResult, families: dict[str, str], policy_name: str, run_name: str,
                  outcomes: list[RolloutOutcome], wall_time_s: float, width: int = 140) -> str:
    """Per-family table (+ total): rollouts, failures, scene score, pass rate, at-fault collisions,
    offroad, progress, red-light / stop-sign violations, close encounters, comfort. Returns the text
    (the caller prints it)."""
    from rich.console import Console
    from rich.table import Table

    groups: dict[str, list[dict]] = {}
    for r in agg.rollouts:
        groups.setdefault(families.get(r["clipgt_id"], "?"), []).append(r)
    cols = ["family", "n", "failed", "score", "pass", "at-fault", "offroad", "progress", "red-light", "stop-sign",
            "close-enc", "comfort"]
    table = Table(title=f"{policy_name} · {run_name}", caption=(
        f"{len(outcomes)} rollouts ({sum(o.resumed for o in outcomes)} resumed, "
        f"{sum(o.status != 'ok' for o in outcomes)} failed) in {wall_time_s:.1f} s"))
    for c in cols:
        table.add_column(c, justify="left" if c == "family" else "right", no_wrap=True)

    def line(name, rs):
        m = lambda k: _mean([r["metrics"].get(k) for r in rs if r["status"] != "failed"])  # noqa: E731
        f = lambda x: "-" if np.isnan(x) else f"{x:.2f}"  # noqa: E731
        return [name, str(len(rs)), str(sum(r["status"] == "failed" for r in rs)), f(_mean([r["score"] for r in rs])),
                f(_mean([float(r["passed"]) for r in rs])), f(m("collision_at_fault")), f(m("offroad")),
                f(m("progress_clipped_rel")), f(m("red_light_violation")), f(m("stop_sign_violation")),
                f(m("close_encounter")), f(m("comfort"))]

    for fam in sorted(groups):
        table.add_row(*line(fam, groups[fam]))
    table.add_section()
    table.add_row(*line("all", agg.rollouts))
    console = Console(record=True, width=width, file=open(os.devnull, "w"), color_system=None)
    console.print(table)
    errors = [r for r in agg.rollouts if r["status"] == "failed"]
    for r in errors[:5]:
        console.print(f"failed {r['clipgt_id']}/{r['rollout_id'][:8]}: {r.get('error')}", markup=False)
    if len(errors) > 5:
        console.print(f"... and {len(errors) - 5} more failures (see aggregate/results-summary.json)")
    return console.export_text()


# ----------------------------------------------------------------------------------------------
# CLI entry
# ----------------------------------------------------------------------------------------------
def main_sim_run(suite: str, policy: str, out: str | Path, rollouts: int = 1, workers: int | None = None,
                 address: str | None = None, video: bool = False, progress: bool = True,
                 wire_precision: bool = False) -> BatchResult:
    """``cordillera sim run --suite S --policy P --out DIR [--rollouts N] [--workers N] [--address A]
    [--video] [--wire-precision]``. ``policy="vla:<checkpoint>"`` runs the VLA (handed over to
    ``train.evaluate.main_sim_run_vla``: the model lives above sim, so it is imported only here).
    ``wire_precision`` rounds what AlpaSim's wire carries to float32 (``SimConfig.wire_precision``),
    so the results equal ``--services grpc`` bit for bit."""
    if policy.startswith("vla:"):
        if wire_precision:
            raise ValueError("--wire-precision is only implemented for the built-in policies, not vla:")
        from cordillera.train.evaluate import main_sim_run_vla

        return main_sim_run_vla(suite, policy, out, rollouts, workers, address, video, progress)
    if policy not in POLICY_NAMES:
        raise ValueError(f"unknown policy {policy!r}; valid: {', '.join(POLICY_NAMES)}")
    from cordillera.world import generator

    scenarios, broken = [], {}
    for family, seed in generator.suite(suite):
        try:
            scenarios.append(generator.make(family, seed))
        except Exception as e:  # noqa: BLE001 - a broken family must not stop the suite
            broken[f"{family}-{int(seed):05d}"] = _err(e)
    from cordillera.sim.runtime import SimConfig

    config = SimConfig(wire_precision=True) if wire_precision else None
    result = run_batch(scenarios, PolicyFactory(policy), out, rollouts_per_scenario=rollouts, workers=workers,
                       address=address, progress=progress, broken=broken, test_suite_id=suite, config=config,
                       description=f"suite={suite} policy={policy}", video=video)
    if progress:
        sys.stdout.write(result.summary_text)
    return result


__all__ = [
    "POLICY_NAMES", "make_policy", "PolicyFactory", "expert_reference_factory", "rollout_id_for", "save_rollout",
    "load_rollout", "reference_task", "rollout_task", "RolloutOutcome", "BatchResult", "run_batch", "summary_table",
    "main_sim_run", "SCENARIO_JSON", "VIDEO_CAMERA", "default_renderer_factory", "video_file", "decision_cause",
    "decision_text", "display_coc", "write_rollout_video",
]
