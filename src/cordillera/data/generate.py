"""Generate PhysicalAI-AV clips from expert rollouts: scenario → rollout → render → clip files.

For each (family, seed) of a suite: ``world.generator.make`` builds the scenario (its family
randomises map, traffic and conditions from the seed), the privileged ``ExpertPolicy`` drives it
for 20 s through ``sim.runtime.run_rollout`` with the model's four cameras rendered at 320×576
each 10 Hz step (``keep_images=True``), REASONING's ``label_rollout`` writes the CoC events (when
the labeler is importable; otherwise a clip gets no reasoning and ``event_t0s`` = its hazard
onsets), and :func:`cordillera.data.writer.stage_clip` encodes and stages the clip.

Frame rate: the simulator renders at 10 Hz (its control period); the MP4s are 30 fps like the
PhysicalAI-AV release, so every rendered frame appears three times (frame at 30 fps time t = the
latest render at or before t). Nothing after t reaches a frame stamped t.

Clips are named by a UUID derived from (family, seed), so a rerun skips clips already written
(resume). Work runs through Ray (``address=None`` → a local cluster with ``workers`` CPUs,
``--address`` → an existing cluster), or in-process with ``workers=1``. Workers stage their own
clips (encoding in parallel); the driver packs chunks. A scenario that fails (build, rollout,
labelling or encoding) is skipped and reported; it never stops the run.

``perturb_fraction > 0`` drives that share of the *training* clips with a DART-style disturbance
(``sim.policies.perturbed``): the expert is briefly turned off its line and then recovers. The
disturbance is drawn from (family, seed, rollout seed), stored in the clip metadata
(``perturbation``, JSON) so `redrive` reproduces it, and no CoC event / t0 has the disturbance in
its 6.4 s future (training learns the recovery, not the push). Validation clips are never perturbed.

``handover_from=CKPT`` adds on-policy clips (DAgger; ``sim.policies.perturbed.Handover``): for a
``handover_fraction`` share of the training scenarios, a second clip in which the VLA checkpoint
drives from the end of the warm-up until a seeded handover time and the expert then takes over from
wherever the VLA left the car. It is a clip of its own (``clip_uuid(family, seed, HANDOVER)``, the
same scenario key, so it lands on its scenario's side of every split), stores the handover in its
metadata (``handover``, JSON) and is labelled at generation (its drive cannot be re-driven without the
learner; ``label_every_us`` / ``label_start_us`` give it the dense t0 grid `cordillera train nano`
uses), only at t0s whose 6.4 s future is the expert's.
"""

from __future__ import annotations

import dataclasses
import json
import time
import traceback
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from cordillera import code_version
from cordillera.data import keys as K
from cordillera.data import layout as L
from cordillera.data.egomotion import egomotion_from_states
from cordillera.data.writer import DEFAULT_CHUNK_SIZE, CameraStream, ClipData, ClipRecord, create, stage_clip
from cordillera.render.rig import MODEL_CARD_IMAGE_HW

__all__ = ["CLIP_NAMESPACE", "DEFAULT_TRACK_WIDTH_M", "ROLLOUT_SEED", "PERTURBATION", "HANDOVER", "MAX_REDRIVE_DRIFT_M",
           "clip_uuid", "split_for", "perturbation_for", "clip_perturbation", "handover_for", "clip_handover",
           "expert_policy",
           "label_events", "ClipProgress", "rollout_to_clip", "clip_scenario", "redrive", "clip_ego_xy",
           "redrive_drift_m", "generate_one", "generate", "main_generate"]

CLIP_NAMESPACE = uuid.UUID("6f1c2a4e-8d3b-5e7f-9a0b-1c2d3e4f5a6b")  # fixed: clip ids are reproducible
CLIP_DURATION_US = 20_000_000  # [µs] PhysicalAI-AV clips are ~20 s, spec/alpamayo_training_data.md §7.2
DEFAULT_IMAGE_HW = MODEL_CARD_IMAGE_HW
DEFAULT_TRACK_WIDTH_M = 1.7  # [m] EgoSpec has no track width; a mid-size car's
VAL_FRACTION = 10  # one clip in ten goes to "val" (by clip uuid)
ROLLOUT_SEED = "rollout_seed"  # metadata column: the seed of the expert rollout and of the CoC phrasing
PERTURBATION = "perturbation"  # metadata column: the clip's DART disturbance as JSON ("" = none)
HANDOVER = "handover"  # metadata column: the learner's drive before the expert took over, JSON ("" = none)
MAX_REDRIVE_DRIFT_M = 2.0  # [m] ours: a re-driven rollout this close to the stored egomotion is the same drive


def clip_uuid(family: str, seed: int, variant: str = "") -> str:
    """The clip id of scenario (family, seed); a ``variant`` (e.g. ``HANDOVER``) names another drive of it."""
    return str(uuid.uuid5(CLIP_NAMESPACE, f"cordillera/{family}/{int(seed)}" + (f"/{variant}" if variant else "")))


def split_for(clip_id: str) -> str:
    return "val" if uuid.UUID(clip_id).int % VAL_FRACTION == 0 else "train"


def _training_draw(family: str, seed: int, rollout_seed: int, fraction: float, what: str, stream: str, sample):
    """``sample(rng)`` for a ``fraction`` of the training scenarios, else None; drawn from (family, seed,
    rollout seed) and a named ``stream``, so every run and every re-drive picks the same."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {fraction}")
    if fraction == 0.0 or split_for(clip_uuid(family, seed)) != "train":
        return None
    rng = np.random.default_rng([int(seed), int(rollout_seed), uuid.uuid5(CLIP_NAMESPACE, stream).int % 2**32])
    return sample(rng) if rng.random() < fraction else None


def _stored_window(metadata: dict, column: str, cls):
    """The ``cls`` window a clip's metadata stores in ``column`` (None: empty, missing or NaN)."""
    value = metadata.get(column)
    return cls.from_json(value if isinstance(value, str) else None)


def perturbation_for(family: str, seed: int, rollout_seed: int, fraction: float, profile: str = "push"):
    """The clip's DART disturbance or None: a `fraction` of the training clips get one, drawn from
    (family, seed, rollout seed) so every run and every re-drive picks the same, in the ranges of
    `sim.policies.perturbed.PERTURB_PROFILES[profile]` ("push": brief nudges; "drift": seconds-long)."""
    from cordillera.sim.policies.perturbed import PERTURB_PROFILES, sample_perturbation

    if profile not in PERTURB_PROFILES:
        raise ValueError(f"unknown perturb profile {profile!r}; choose one of {sorted(PERTURB_PROFILES)}")
    ranges = PERTURB_PROFILES[profile]
    return _training_draw(family, seed, rollout_seed, fraction, "perturb_fraction", family,
                          lambda rng: sample_perturbation(rng, **ranges))


def clip_perturbation(metadata: dict):
    """The Perturbation stored in a clip's metadata (None for clips driven without one)."""
    from cordillera.sim.policies.perturbed import Perturbation

    return _stored_window(metadata, PERTURBATION, Perturbation)


def handover_for(family: str, seed: int, rollout_seed: int, fraction: float, learner: str):
    """The Handover of scenario (family, seed)'s on-policy clip, or None: a ``fraction`` of the training
    scenarios get one, drawn from (family, seed, rollout seed) like `perturbation_for` (another stream)."""
    from cordillera.sim.policies.perturbed import sample_handover

    return _training_draw(family, seed, rollout_seed, fraction, "handover_fraction", f"{family}/{HANDOVER}",
                          lambda rng: sample_handover(rng, learner))


def clip_handover(metadata: dict):
    """The Handover stored in a clip's metadata (None for clips the expert drove alone)."""
    from cordillera.sim.policies.perturbed import Handover

    return _stored_window(metadata, HANDOVER, Handover)


def expert_policy(perturbation=None, handover=None):
    """The data-generating policy: the privileged expert, disturbed when a perturbation is given,
    driven by the handover's learner (``VLAPolicy``, the closed-loop evaluation's settings) inside
    a handover's window."""
    from cordillera.sim.expert import ExpertPolicy
    from cordillera.sim.policies.perturbed import HANDOVER_REPLAN_EVERY_S, HandoverPolicy, PerturbedPolicy

    expert = ExpertPolicy() if perturbation is None else PerturbedPolicy(ExpertPolicy(), perturbation)
    if handover is None:
        return expert
    from cordillera.model.policy import VLAPolicy

    learner = VLAPolicy(handover.learner, replan_every_s=HANDOVER_REPLAN_EVERY_S, threads=1, name="learner")
    return HandoverPolicy(learner, expert, handover)


# ---------------------------------------------------------------------------------------------
# Rollout → ClipData
# ---------------------------------------------------------------------------------------------
def _obstacles(scenario, rollout, yaw0: float, x0: float, y0: float) -> pd.DataFrame:
    """Actor cuboids per step in the anchor frame (box centre, z = half height above ground)."""
    c, s = np.cos(yaw0), np.sin(yaw0)
    rows = []
    for step in rollout.steps:
        for aid, st in step.actors.items():
            if not st.visible:
                continue
            spec = scenario.actor(aid)
            dx, dy = st.x_m - x0, st.y_m - y0
            yaw = st.yaw_rad - yaw0
            rows.append((int(step.t_us), aid, spec.label, c * dx + s * dy, -s * dx + c * dy,
                         st.z_m + spec.height_m / 2, 0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2),
                         spec.length_m, spec.width_m, spec.height_m))
    if not rows:
        from cordillera.data.writer import _empty_obstacles

        return _empty_obstacles()
    df = pd.DataFrame(rows, columns=list(K.OBSTACLE_COLUMNS))
    df[K.TIMESTAMP] = df[K.TIMESTAMP].astype(np.int64)
    return df


def label_events(scenario, rollout, seed: int, perturbation=None, every_us: int | None = None,
                 start_us: int | None = None) -> tuple[list[dict], list[int], str]:  # fmt: skip
    """(events, event_t0s, source): REASONING's labels when available, else hazard onsets; none
    whose 6.4 s future holds the clip's disturbance. ``every_us``: label a t0 grid from ``start_us``
    as well as the keyframes (``reasoning.keyframes.grid_keyframes``; what `cordillera train nano`
    trains on), not the keyframes alone."""
    from cordillera.sim.policies.perturbed import label_window_ok

    try:
        from cordillera.reasoning.labeler import label_rollout
    except ImportError:
        label_rollout = None
    if label_rollout is not None:
        kfs = None
        if every_us is not None:
            from cordillera.reasoning.keyframes import MIN_HISTORY_US, grid_keyframes

            kfs = grid_keyframes(rollout, scenario, every_us, MIN_HISTORY_US if start_us is None else start_us)
        evs = label_rollout(rollout, scenario, seed=seed, keyframes=kfs)
        events = [{K.EVENT_START_TIMESTAMP: int(e.event_start_timestamp_us), K.COT: str(e.cot)} for e in evs
                  if label_window_ok(int(e.event_start_timestamp_us), perturbation)]
        return events, [e[K.EVENT_START_TIMESTAMP] for e in events], "labeler"
    return [], sorted({int(h.t_us) for h in scenario.hazards if label_window_ok(int(h.t_us), perturbation)}), "hazards"


def rollout_to_clip(scenario, rollout, rig, clip_id: str, events=None, event_t0s=None, split: str = "train",
                    extra_metadata: dict | None = None) -> ClipData:
    """A :class:`ClipData` from an expert rollout that kept its camera frames."""
    steps = rollout.steps
    if len(steps) < 2:
        raise ValueError(f"scenario {scenario.id}: rollout has {len(steps)} steps")
    t = np.array([s.t_us for s in steps], dtype=np.int64)
    if t[0] != 0:
        raise ValueError(f"scenario {scenario.id}: rollout must start at t=0, starts at {t[0]}")
    ego = [s.ego for s in steps]
    egomotion = egomotion_from_states(
        t, [e.x_m for e in ego], [e.y_m for e in ego], [e.yaw_rad for e in ego], [e.speed_mps for e in ego],
        [e.accel_mps2 for e in ego], [e.yaw_rate_radps for e in ego], [e.lat_speed_mps for e in ego],
        [e.z_m for e in ego])
    cameras = {}
    for cam in rig.names:
        frames, ft = [], []
        for s in steps:
            if not s.frames or cam not in s.frames:
                raise ValueError(f"scenario {scenario.id}: step t={s.t_us} has no frame of {cam} "
                                 "(run with keep_images=True and this camera)")
            frames.append(s.frames[cam].image)
            ft.append(s.t_us)  # the frame shows the committed state at the step time
        cameras[cam] = CameraStream(frames, np.array(ft, dtype=np.int64))
    eg = scenario.ego
    vehicle = {"length": eg.length_m, "width": eg.width_m, "height": eg.height_m,
               "rear_axle_to_bbox_center": eg.rear_axle_to_center_m, "wheelbase": eg.wheelbase_m,
               "track_width": DEFAULT_TRACK_WIDTH_M}
    meta = {K.FAMILY: scenario.family, K.CATEGORY: scenario.category, K.SEED: int(scenario.seed),
            K.SCENARIO_ID: scenario.id, K.TIME_OF_DAY: scenario.conditions.time_of_day,
            K.WEATHER: scenario.conditions.weather, K.DURATION_US: int(t[-1]),
            "scenario_params": json.dumps(scenario.params, sort_keys=True, default=str), K.CODE_VERSION: code_version()}
    meta.update(extra_metadata or {})
    return ClipData(clip_id=clip_id, egomotion=egomotion, cameras=cameras, camera_specs={c.name: c for c in rig},
                    vehicle=vehicle, obstacles=_obstacles(scenario, rollout, ego[0].yaw_rad, ego[0].x_m, ego[0].y_m),
                    events=list(events or []), event_t0s=event_t0s, metadata=meta, split=split)


# ---------------------------------------------------------------------------------------------
# Re-driving a generated clip (the labeler needs the privileged scenario and the expert's decisions,
# which the layout does not store; (family, seed, rollout seed) reproduce them)
# ---------------------------------------------------------------------------------------------
def redrive(family: str, seed: int, duration_us: int = CLIP_DURATION_US, rollout_seed: int = 0, perturbation=None):
    """(scenario, rollout): a generated clip's expert drive again, without cameras (the same
    scenario, policy, seed and disturbance give the same rollout; rendering does not feed back)."""
    from cordillera.sim.runtime import SimConfig, run_rollout

    scenario = clip_scenario(family, seed, duration_us)
    return scenario, run_rollout(scenario, expert_policy(perturbation), SimConfig(), seed=int(rollout_seed))


def clip_scenario(family: str, seed: int, duration_us: int = CLIP_DURATION_US):
    """The scenario of the clip (family, seed), cut to ``duration_us``."""
    from cordillera.world.generator import make

    scenario = make(family, int(seed))
    if scenario.duration_us != duration_us:
        scenario = dataclasses.replace(scenario, duration_us=int(duration_us))
    return scenario


def clip_ego_xy(reader, clip_id: str) -> np.ndarray:
    """(N, 2) stored ego positions of a clip in its anchor frame on the 10 Hz control grid."""
    ego = reader.egomotion(clip_id)
    t = np.arange(0, reader.end_timestamp(clip_id) + 1, 100_000, dtype=np.int64)
    xyz, _ = ego.poses(t[t <= ego.end_us])
    return np.asarray(xyz)[:, :2]


def redrive_drift_m(rollout, ego_xy: np.ndarray) -> float:
    """Largest distance between a re-driven rollout and a clip's stored egomotion (``clip_ego_xy``);
    inf if their lengths differ. Last-bit float differences (BLAS threads) grow to ~0.5 m over
    20 s; a different scenario is metres off (``MAX_REDRIVE_DRIFT_M``)."""
    e0 = rollout.steps[0].ego  # egomotion is stored in the anchor frame p_a = R(-yaw0)(p - p0)
    c, s = np.cos(e0.yaw_rad), np.sin(e0.yaw_rad)
    d = np.array([[st.ego.x_m - e0.x_m, st.ego.y_m - e0.y_m] for st in rollout.steps[: len(ego_xy)]])
    xy = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)
    if xy.shape != np.shape(ego_xy):
        return float("inf")
    return float(np.abs(xy - ego_xy).max())


# ---------------------------------------------------------------------------------------------
# One clip (runs in a worker)
# ---------------------------------------------------------------------------------------------
def generate_one(family: str, seed: int, out, cameras, image_hw=DEFAULT_IMAGE_HW,
                 duration_us: int = CLIP_DURATION_US, rollout_seed: int = 0, backend: str = "auto",
                 perturb_fraction: float = 0.0, handover=None, label_every_us: int | None = None,
                 label_start_us: int | None = None, perturb_profile: str = "push") -> dict:  # fmt: skip
    """Build, drive, render, label and stage one clip (with a ``handover``: the scenario's on-policy
    clip, labelled on the ``label_every_us`` grid). Returns ``{"ok": True, "record": json}`` or
    ``{"ok": False, "family", "seed", "error"}`` — it never raises for a broken scenario."""
    t_start = time.perf_counter()
    try:
        from cordillera.render import make_renderer
        from cordillera.render.rig import default_rig
        from cordillera.sim.runtime import SimConfig, run_rollout

        scenario = clip_scenario(family, seed, duration_us)
        rig = default_rig(tuple(cameras), height=int(image_hw[0]), width=int(image_hw[1]))
        renderer = make_renderer(scenario, rig, backend=backend)
        config = SimConfig(cameras=tuple(cameras), keep_images=True)
        pert = perturbation_for(family, seed, rollout_seed, perturb_fraction, perturb_profile) if handover is None else None
        rollout = run_rollout(scenario, expert_policy(pert, handover), config, renderer=renderer, seed=rollout_seed)
        if rollout.failed:
            raise ValueError(f"{'handover' if handover else 'expert'} rollout failed: {rollout.error}")
        if handover is None:
            events, t0s, source = label_events(scenario, rollout, rollout_seed, pert)
        else:
            events, t0s, source = label_events(scenario, rollout, rollout_seed, handover, label_every_us, label_start_us)
        cid = clip_uuid(family, seed, HANDOVER if handover else "")
        clip = rollout_to_clip(scenario, rollout, rig, cid, events, t0s, split_for(clip_uuid(family, seed)),
                               {"events_source": source, "render_backend": type(renderer).__name__,
                                ROLLOUT_SEED: int(rollout_seed), PERTURBATION: "" if pert is None else pert.to_json(),
                                HANDOVER: "" if handover is None else handover.to_json()})
        del rollout
        rec = stage_clip(out, clip)
        return {"ok": True, "record": rec.to_json(), "wall_s": time.perf_counter() - t_start}
    except Exception as e:  # a broken scenario is reported, never fatal
        return {"ok": False, "family": family, "seed": int(seed), "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(limit=6), "wall_s": time.perf_counter() - t_start}


# ---------------------------------------------------------------------------------------------
# Many clips
# ---------------------------------------------------------------------------------------------
def _pairs(suite, clips: int) -> list[tuple[str, int]]:
    if isinstance(suite, (list, tuple)):
        pairs = [(str(f), int(s)) for f, s in suite]
    else:
        from cordillera.world.generator import suite as suite_pairs

        pairs = suite_pairs(suite, n=clips) if suite == "train" else suite_pairs(suite)
    if clips is not None:
        if clips > len(pairs):
            raise ValueError(f"suite has {len(pairs)} scenarios, {clips} clips asked (use suite 'train' for more)")
        pairs = pairs[:clips]
    return pairs


class ClipProgress:
    """A rich progress bar over clips (or nothing when disabled)."""

    def __init__(self, total: int, done: int, enabled: bool):
        self._p = None
        if enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._p = Progress(TextColumn("[bold]clips"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
            self._p.start()
            self._t = self._p.add_task("clips", total=total, completed=done, info="")

    def advance(self, info: str) -> None:
        if self._p is not None:
            self._p.update(self._t, advance=1, info=info)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


def generate(suite, clips: int | None, out, workers: int | None = None, address: str | None = None, seed: int = 0,
             cameras=None, image_hw=DEFAULT_IMAGE_HW, duration_us: int = CLIP_DURATION_US,
             chunk_size: int = DEFAULT_CHUNK_SIZE, progress: bool = True, backend: str = "auto",
             perturb_fraction: float = 0.0, handover_from: str | Path | None = None, handover_fraction: float = 0.0,
             label_every_us: int | None = None, label_start_us: int | None = None,
             perturb_profile: str = "push") -> dict:  # fmt: skip
    """Generate ``clips`` clips of ``suite`` (a suite name or a list of (family, seed)) into ``out``.

    ``seed`` seeds the rollouts and the CoC phrasing; ``perturb_fraction`` is the share of training
    clips driven with a DART disturbance of ``perturb_profile``; ``handover_from`` (a VLA checkpoint) and ``handover_fraction``
    add an on-policy clip for that share of the training scenarios, labelled on the ``label_every_us``
    grid (module docstring). Returns a report dict: ``written`` (new clip ids), ``skipped`` (already
    present), ``failed`` (list of {family, seed, error}), ``clips_total``, ``wall_s``, ``clip_wall_s``
    (per written clip, in its worker), ``handover_clips`` (ids of the on-policy clips asked for).
    Failures are also appended to ``.cordillera/failures.jsonl``."""
    import os

    from cordillera.render.rig import DEFAULT_MODEL_CAMERAS

    cameras = tuple(cameras or DEFAULT_MODEL_CAMERAS)
    out = Path(out)
    t_start = time.perf_counter()
    pairs = _pairs(suite, clips)
    perturbation_for("", 0, 0, perturb_fraction, perturb_profile)  # a bad fraction/profile fails here, not per clip
    jobs = [(f, s, None) for f, s in pairs]  # (family, seed, handover)
    if handover_from is None:
        if handover_fraction:  # a share of on-policy clips without a learner to drive them: a config slip
            raise ValueError(f"handover_fraction={handover_fraction} needs handover_from (a VLA checkpoint)")
    else:
        if not (Path(handover_from) / "config.json").is_file():
            raise ValueError(f"handover_from={handover_from}: not a checkpoint directory (no config.json)")
        jobs += [(f, s, h) for f, s in pairs
                 if (h := handover_for(f, s, seed, handover_fraction, str(handover_from))) is not None]

    def job_id(job) -> str:
        return clip_uuid(job[0], job[1], HANDOVER if job[2] is not None else "")

    writer = create(out, cameras, chunk_size=chunk_size)
    todo = [j for j in jobs if not writer.has_clip(job_id(j))]
    skipped = [job_id(j) for j in jobs if writer.has_clip(job_id(j))]
    written, failed, clip_wall_s = [], [], []
    bar = ClipProgress(len(jobs), len(skipped), progress)
    fail_log = out / L.BOOKKEEPING_DIR / "failures.jsonl"

    def collect(res: dict) -> None:
        if res["ok"]:
            rec = ClipRecord.from_json(res["record"])
            writer.add_staged(rec)
            written.append(rec.clip_id)
            clip_wall_s.append(float(res["wall_s"]))
            bar.advance(f"{rec.metadata.get(K.FAMILY)} ({res['wall_s']:.0f} s)")
        else:
            failed.append({k: res[k] for k in ("family", "seed", "error")})
            fail_log.parent.mkdir(parents=True, exist_ok=True)
            with open(fail_log, "a") as f:
                f.write(json.dumps({k: res[k] for k in ("family", "seed", "error", "traceback")}) + "\n")
            bar.advance(f"[red]FAILED {res['family']}/{res['seed']}")

    n_workers = int(workers or os.cpu_count() or 1)
    args = dict(out=str(out), cameras=cameras, image_hw=tuple(image_hw), duration_us=int(duration_us),
                rollout_seed=int(seed), backend=backend, perturb_fraction=float(perturb_fraction),
                perturb_profile=perturb_profile, label_every_us=label_every_us, label_start_us=label_start_us)
    try:
        if address is None and n_workers == 1:
            for f, s, h in todo:
                collect(generate_one(f, s, handover=h, **args))
        elif todo:
            import ray

            own = not ray.is_initialized()
            if own:
                if address is None:
                    ray.init(num_cpus=n_workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
                else:
                    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            try:
                task = ray.remote(num_cpus=1, max_retries=0)(generate_one)
                pending = [task.remote(f, s, handover=h, **args) for f, s, h in todo]
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    for ref in done:
                        try:
                            collect(ray.get(ref))
                        except Exception as e:  # a worker died (OOM, segfault): report, go on
                            collect({"ok": False, "family": "?", "seed": -1, "error": f"worker lost: {e}",
                                     "traceback": "", "wall_s": 0.0})
            finally:
                if own:
                    ray.shutdown()
        all_ids = writer.finalize()
    finally:
        bar.close()
    return {"written": written, "skipped": skipped, "failed": failed, "clips_total": len(all_ids),
            "wall_s": time.perf_counter() - t_start, "clip_wall_s": clip_wall_s,
            "handover_clips": [job_id(j) for j in jobs if j[2] is not None]}


DEFAULT_TRAIN_CLIPS = 100  # `cordillera data generate --suite train` without --clips


def main_generate(suite: str, clips: int | None, out, workers: int | None = None, address: str | None = None,
                  perturb_fraction: float = 0.0, image_hw=DEFAULT_IMAGE_HW, seeds_per_family: int | None = None,
                  handover_from=None, handover_fraction: float = 0.0,
                  label_every_us: int | None = None, perturb_profile: str = "push") -> dict:  # fmt: skip
    """CLI entry (`cordillera data generate`): generate, then print a summary and any failures.
    ``clips`` None: ``DEFAULT_TRAIN_CLIPS`` of ``train``, every scenario of another suite;
    ``seeds_per_family``: only the first that many seeds of each family of the suite; ``handover_from``
    / ``handover_fraction`` / ``label_every_us``: on-policy clips (module docstring)."""
    from rich.console import Console
    from rich.table import Table

    from cordillera.world.generator import first_per_family
    from cordillera.world.generator import suite as suite_pairs

    if clips is None and suite == "train":
        clips = DEFAULT_TRAIN_CLIPS
    scenarios = suite
    if seeds_per_family is not None:
        scenarios = first_per_family(suite_pairs(suite), seeds_per_family)
    rep = generate(scenarios, clips, out, workers=workers, address=address, perturb_fraction=perturb_fraction,
                   image_hw=tuple(image_hw), handover_from=handover_from, handover_fraction=handover_fraction,
                   label_every_us=label_every_us, perturb_profile=perturb_profile)
    con = Console()
    t = Table(title=f"data generate → {out}")
    for col in ("written", "skipped (resume)", "failed", "clips in dataset", "wall [s]", "clips/min"):
        t.add_column(col, justify="right")
    rate = 60 * len(rep["written"]) / max(rep["wall_s"], 1e-9)
    t.add_row(str(len(rep["written"])), str(len(rep["skipped"])), str(len(rep["failed"])), str(rep["clips_total"]),
              f"{rep['wall_s']:.1f}", f"{rate:.2f}")
    con.print(t)
    if rep["failed"]:
        ft = Table(title="skipped broken scenarios (details in .cordillera/failures.jsonl)")
        for col in ("family", "seed", "error"):
            ft.add_column(col)
        for f in rep["failed"]:
            ft.add_row(str(f["family"]), str(f["seed"]), f["error"][:200])
        con.print(ft)
    return rep
