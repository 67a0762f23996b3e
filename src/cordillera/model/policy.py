"""The VLA as a simulator policy: the only bridge from ``model`` to ``sim`` (STYLE.md §5 "model/").

Like LeRobot's policy object, :class:`VLAPolicy` implements the sim ``Policy`` protocol:

- ``start(session)`` resets the caches (per-camera frame buffers, inference counter) and takes
  the session seed;
- ``plan(observation, t_now_us, t_query_us)`` buffers the observation's frames, selects the
  model inputs at ``t0 = t_now_us`` exactly as the data pipeline does for training
  (spec/alpamayo_model.md §2.1, §2.3), runs the processor, then ``sample_trajectories``, then the
  output step (spec/alpasim.md §2.2 plan conversion) and returns a :class:`Plan`;
- ``close()`` drops the caches.

Inputs at t0 (the AlpaSim Alpamayo driver's frame cache + history validation, spec/alpasim.md §6):

- per camera the **latest frame at or before** each of t0 − 0.3, −0.2, −0.1, 0 s (a frame's time
  is its end, as AlpaSim fires camera events at the frame end); a frame older than
  ``MAX_FRAME_AGE_US`` for its request counts as missing;
- 16 ego poses at t0 − 1.5 … t0 (10 Hz), interpolated (linear xyz, slerp rotation) from the
  observation's ego history and expressed in the rig frame at t0 (``geometry.frames.to_frame``,
  as ``data.samples.build_sample``); the history must cover [t0 − 1.5 s, t0];
- images resized with the data pipeline's own resize (cv2 INTER_AREA) to the model's input size;
- navigation text: ``observation.nav_text``, else derived from the route
  (``sim.navigation.nav_text_from_route``), unless ``use_nav=False``.

Until frames and history cover the window the answer is ``Plan(warming_up=True)``, which the
runtime accepts only during the force-GT warm-up (AlpaSim's driver returns an empty trajectory
then); ``warmup_reason`` says what is missing.

Output (spec/alpasim.md §2.2): pose 0 = the origin at ``t_now_us``, then the 64 predicted poses
at t_now + 0.1 … 6.4 s in the rig frame at t_now, z = 0, yaw-only. Sample 0 is the plan (as the
Alpamayo driver takes sample 0); the other K − 1 samples are ``alternatives``. With
``select="consistent"`` the sample whose own CoC agrees best with its own trajectory drives instead
(best-of-K by ``reasoning.consistency``, an inference-time stand-in for a consistency reward); with
``select="medoid"`` the most typical of the K trajectories drives (``medoid_order``: a weak model's
samples scatter widely, and the medoid is the one nearest the others).

Replanning rate: ``replan_every_s = 0`` runs the model at every call (AlpaSim's 10 Hz driver). A
larger value runs it only when that much time has passed since the last inference and otherwise
re-anchors the last plan at the current pose (its remaining poses expressed in the rig frame at
t_now, resampled on the 100 ms grid, pose 0 = the origin) with ``Plan.planned_at_us`` set — the
cheap way to evaluate on 2 cores, reported as such.

Reasoning (a diagnostic): ``reasoning="privileged"`` does not let the model write its CoC; the
text the auto-labeler writes for the current simulator state and the expert's decision now
(``reasoning.labeler.PrivilegedReasoner``, fed through ``observe_world`` like the expert) is forced
token by token (``modeling.forcing``) and the action expert conditions on it. The car is still
driven by the VLA's own trajectory; the run measures how the action expert drives given the right
reasoning, which bounds what better perception → decision could buy in closed loop.
``steering="privileged"`` is the lateral counterpart: each plan the model makes is laid onto the
path the expert plans from the same state (``on_path``: the model's distances along its own plan,
hence its speeds, are kept; position and heading at each distance are the expert path's), so the car
steers like the expert at the model's speeds — what perfect lateral control would buy.

Determinism: inference ``n`` of a session draws from ``torch.Generator`` seeded with
``SeedSequence([policy seed, session seed, n])``. AlpaSim uses ``session seed + n``; mixing
through SeedSequence keeps rollouts with seeds s and s + 1 from sharing noise shifted by one step.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cordillera.data.samples import HISTORY_OFFSETS_US, IMAGE_OFFSETS_US
from cordillera.data.samples import resize_image as resize_like_training  # the one resize used for training data
from cordillera.geometry.frames import to_frame
from cordillera.geometry.interpolate import interpolate_poses
from cordillera.geometry.pose import quat_to_matrix
from cordillera.model.configuration import CAMERA_NAMES
from cordillera.model.drafting import NgramDraft
from cordillera.model.modeling import CordilleraVLA, forcing, parse_dtype
from cordillera.model.processor import VLAProcessor
from cordillera.model.tokenizer import load_tokenizer
from cordillera.reasoning.labeler import PrivilegedReasoner
from cordillera.reasoning.schema import parse
from cordillera.sim.navigation import nav_text_from_route
from cordillera.sim.types import PLAN_PERIOD_US, CameraFrame, Observation, Plan, SessionInfo

__all__ = [
    "MAX_FRAME_AGE_US", "SELECT_MODES", "REASONING_MODES", "STEERING_MODES", "on_path", "VLAPolicy",
    "VLAPolicyFactory", "load_model", "select_frames", "history_in_rig", "inference_seed", "check_temperature",
    "check_select", "check_diagnostics", "medoid_order",
]

SELECT_MODES = ("first", "consistent", "medoid")
REASONING_MODES = ("own", "privileged")  # who writes the CoC the action expert conditions on
STEERING_MODES = ("own", "privileged")  # whose path the model's speed profile is driven along
MAX_FRAME_AGE_US = 100_000  # [µs] a frame may be at most one control period older than its request time
MAX_REPLAN_EVERY_S = 2.0  # [s] a held 6.4 s plan must still cover MIN_HELD_HORIZON_US
MIN_HELD_HORIZON_US = 3_000_000  # [µs] re-anchor the last plan only while it reaches this far ahead
FUTURE_PERIOD_US = PLAN_PERIOD_US  # [µs] 10 Hz model output (spec/alpamayo_model.md §3) = the sim plan period

_MODEL_CACHE: dict[tuple[str, str, str], tuple[CordilleraVLA, VLAProcessor]] = {}
_MODEL_CACHE_LOCK = threading.Lock()


def load_model(checkpoint: str | Path, device: str = "cpu", dtype: str = "float32") -> tuple[CordilleraVLA, VLAProcessor]:
    """(model in eval mode on ``device`` with weights in ``dtype``, processor) for a ``save_pretrained``
    directory; cached per process and dtype, so the rollouts a Ray worker runs one after another load
    the weights once."""
    key = (str(Path(checkpoint).resolve()), str(device), str(parse_dtype(dtype)))
    with _MODEL_CACHE_LOCK:
        if key not in _MODEL_CACHE:
            model = CordilleraVLA.from_pretrained(checkpoint, dtype=dtype).to(device).eval()
            _MODEL_CACHE[key] = (model, VLAProcessor(model.cfg, load_tokenizer(model.cfg, checkpoint)))
        return _MODEL_CACHE[key]


def inference_seed(policy_seed: int, session_seed: int, count: int) -> int:
    """Seed of the ``count``-th inference of a session (see the module docstring)."""
    return int(np.random.SeedSequence([int(policy_seed) & 0xFFFFFFFF, int(session_seed) & 0xFFFFFFFF,
                                       int(count)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def select_frames(frames: list[CameraFrame], t_request_us, max_age_us: int = MAX_FRAME_AGE_US) -> list[int] | None:
    """Indices into ``frames`` (sorted by ``t_end_us``) of the latest frame at or before each request
    time, or None when a request has no frame (or only one older than ``max_age_us``)."""
    t_end = np.array([f.t_end_us for f in frames], dtype=np.int64)
    req = np.asarray(t_request_us, dtype=np.int64)
    idx = np.searchsorted(t_end, req, side="right") - 1  # spec §2.1: searchsorted(..., 'right') - 1
    if len(t_end) == 0 or np.any(idx < 0) or np.any(req - t_end[np.maximum(idx, 0)] > max_age_us):
        return None
    return [int(i) for i in idx]


def history_in_rig(ego_history, t0_us: int, offsets_us=HISTORY_OFFSETS_US) -> tuple[np.ndarray, np.ndarray] | None:
    """The model's ego history at ``t0 + offsets`` in the rig frame at t0: (xyz (16, 3), rot
    (16, 3, 3)), or None when the observation's history does not cover [t0 − 1.5 s, t0]."""
    t = np.asarray(ego_history.t_us, dtype=np.int64)
    tq = int(t0_us) + np.asarray(offsets_us, dtype=np.int64)
    if len(t) < 2 or t[0] > tq[0] or t[-1] < tq[-1]:
        return None
    xyz_q, quat_q = interpolate_poses(tq, t, ego_history.xyz_local, ego_history.quat_local, method="linear")
    rot_q = quat_to_matrix(quat_q)
    T_local_t0 = np.eye(4)
    T_local_t0[:3, :3], T_local_t0[:3, 3] = rot_q[-1], xyz_q[-1]
    xyz, rot = to_frame(xyz_q, rot_q, T_local_t0)
    return xyz, rot


def check_temperature(name: str, value: float | None, what: str = "") -> float | None:
    """``value`` if it is None or a finite number >= 0 (0 = greedy / no noise), else a ValueError
    naming ``name``; the policy and the evaluation (before any rollout) check with it."""
    if value is not None and not (np.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0{what}, got {value}")
    return value


def check_select(select: str, num_samples: int, fast: bool) -> str:
    """``select`` if it can work with these options, else a ValueError saying why."""
    if select not in SELECT_MODES:
        raise ValueError(f"select must be one of {SELECT_MODES}, got {select!r}")
    if select == "consistent" and (num_samples < 2 or fast):
        raise ValueError("select='consistent' needs num_samples >= 2 and CoC decoding (not fast, a CoC model); "
                         f"got num_samples={num_samples}, fast={fast}")
    if select == "medoid" and num_samples < 2:
        raise ValueError(f"select='medoid' needs num_samples >= 2, got {num_samples}")
    return select


def check_diagnostics(reasoning: str, steering: str, fast: bool) -> None:
    """A ValueError saying why unless ``reasoning`` / ``steering`` are known modes that can work
    with ``fast`` (privileged reasoning forces a CoC, so it needs CoC decoding)."""
    if reasoning not in REASONING_MODES:
        raise ValueError(f"reasoning must be one of {REASONING_MODES}, got {reasoning!r}")
    if reasoning == "privileged" and fast:
        raise ValueError("privileged reasoning forces a CoC into the decoder: it needs CoC decoding (not fast, "
                         "a CoC model)")
    if steering not in STEERING_MODES:
        raise ValueError(f"steering must be one of {STEERING_MODES}, got {steering!r}")


def medoid_order(xy: np.ndarray) -> list[int]:
    """Sample indices of (K, T, 2) trajectories, the medoid first — the sample with the least summed
    mean-pose distance to the others (the most typical of the K; ties keep the lower index) — then
    the rest in index order."""
    d = np.linalg.norm(xy[:, None] - xy[None, :], axis=-1).mean(-1)  # (K, K) mean distance per pose [m]
    best = int(np.argmin(d.sum(1)))
    return [best] + [k for k in range(len(xy)) if k != best]


def on_path(xy: np.ndarray, path_xy: np.ndarray, path_yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poses (T, 2) driven from the rig origin, laid onto another path (P, 2) with headings (P,)
    that also starts at the origin: the i-th pose goes where the path has covered the same distance
    as the poses up to i, with the path's heading there, so the speeds stay and the steering is the
    path's. Beyond the path's end it continues straight along its last heading. → (xy (T, 2), yaw (T,))."""
    xy, path_xy = np.asarray(xy, np.float64), np.asarray(path_xy, np.float64)
    path_yaw = np.unwrap(np.asarray(path_yaw, np.float64))
    s = np.cumsum(np.linalg.norm(np.diff(np.vstack([[0.0, 0.0], xy]), axis=0), axis=1))  # (T,) [m]
    s_path = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path_xy, axis=0), axis=1))])
    s_path = s_path + 1e-9 * np.arange(len(s_path))  # strictly increasing where the path stands still
    extra = max(float(s.max(initial=0.0)) - float(s_path[-1]), 0.0) + 1.0
    heading = np.array([np.cos(path_yaw[-1]), np.sin(path_yaw[-1])])
    path_xy = np.vstack([path_xy, path_xy[-1] + extra * heading])
    s_path, path_yaw = np.append(s_path, s_path[-1] + extra), np.append(path_yaw, path_yaw[-1])
    out = np.stack([np.interp(s, s_path, path_xy[:, 0]), np.interp(s, s_path, path_xy[:, 1])], -1)
    return out, np.interp(s, s_path, path_yaw)


def _pose2d_at(ego_history, t_us: int) -> np.ndarray:
    """(x, y, yaw) of the rig in the local frame at ``t_us``, interpolated from the history."""
    t = np.asarray(ego_history.t_us, dtype=np.int64)
    xyz, quat = interpolate_poses(np.array([t_us], dtype=np.int64), t, ego_history.xyz_local,
                                  ego_history.quat_local, method="linear")
    R = quat_to_matrix(quat)[0]
    return np.array([xyz[0, 0], xyz[0, 1], np.arctan2(R[1, 0], R[0, 0])])


def _device_batch(batch: dict, device) -> dict:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


class VLAPolicy:
    """The VLA driving the simulator (see the module docstring).

    Args:
        checkpoint: a ``save_pretrained`` directory, or a :class:`CordilleraVLA` instance.
        num_samples: K trajectories per step (sample 0 drives, the rest are ``alternatives``).
        temperature, top_p: CoC sampling (spec/alpamayo_model.md §5.1 defaults).
        flow_steps: Euler steps of the action expert.
        fast: skip CoC decoding (trajectory only; a trajectory-only model always does).
        cameras: camera subset (default the model's cameras; any subset, A1.5 style).
        seed: policy seed, mixed with the session seed (determinism).
        device, threads: torch device and intra-op threads (``torch.set_num_threads`` at ``start``).
        max_new_tokens: CoC token budget (default the model's ``max_cot_tokens``).
        use_nav: pass navigation text (observation's, else from the route) in the prompt.
        name: policy name in rollouts and outputs.
        replan_every_s: run the model only every this many seconds (0 = every call) and re-anchor
            the last plan in between (see the module docstring).
        cache_vision: keep each frame's vision features keyed by (camera, frame t_end_us), so a
            steady-state step encodes only the newest frame per camera (same numbers as uncached).
        dtype: "float32" (default) or "bfloat16": inference precision of the weights (opt-in,
            `CordilleraVLA.to_inference_dtype`; a model instance of another dtype is copied, not cast).
        select: which of the K samples drives: "first" (sample 0, as the Alpamayo driver) or
            "consistent" (the sample whose own CoC agrees best with its own trajectory,
            ``reasoning.consistency``; needs K ≥ 2 and CoC decoding; ties keep the lower index) or
            "medoid" (the trajectory nearest the other samples, ``medoid_order``; needs K ≥ 2).
        noise_temperature: scale of the flow's initial noise x0 = ε · temperature (spec A1.5); None =
            the model's ``flow.noise_temperature`` (1.0). Below 1 the expert's samples move towards
            the trajectory its velocity field maps the mean noise to: less lateral scatter from
            step to step in closed loop, less diversity among K samples.
        reasoning: "own" (the model decodes its CoC) or "privileged" (the auto-labeler's CoC for
            the simulator state is forced; needs ``observe_world`` and CoC decoding; see the module
            docstring). When the labeler has no label for a step the model's own CoC is used and
            ``own_coc_steps`` counts it.
        steering: "own" or "privileged" (each plan laid onto the expert's path at the model's own
            distances, ``on_path``; needs ``observe_world``; see the module docstring).
        speculative: decode the CoC speculatively (one sample per step) from an n-gram draft of the
            CoCs this rollout has written so far (``model.drafting.NgramDraft``): the same
            distribution, fewer backbone forwards. The draft starts empty at every ``start``, so a
            rollout's result does not depend on what its worker ran before.
    """

    def __init__(self, checkpoint: str | Path | CordilleraVLA, num_samples: int = 1, temperature: float = 0.6,
                 top_p: float = 0.98, flow_steps: int = 10, fast: bool = False, cameras=None, seed: int = 0,
                 device: str = "cpu", threads: int | None = 2, max_new_tokens: int | None = None,
                 use_nav: bool = True, name: str = "vla", cache_vision: bool = True, replan_every_s: float = 0.0,
                 dtype: str = "float32", select: str = "first", noise_temperature: float | None = None,
                 reasoning: str = "own", steering: str = "own", speculative: bool = True):
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if flow_steps < 1:
            raise ValueError(f"flow_steps must be >= 1, got {flow_steps}")
        check_temperature("temperature", temperature, " (0 = greedy CoC)")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        check_temperature("noise_temperature", noise_temperature)
        if not 0.0 <= replan_every_s <= MAX_REPLAN_EVERY_S:
            raise ValueError(f"replan_every_s must be in [0, {MAX_REPLAN_EVERY_S}] s, got {replan_every_s}")
        want = parse_dtype(dtype)  # ValueError on an unknown dtype
        if isinstance(checkpoint, CordilleraVLA):
            if checkpoint.dtype != want:  # do not cast the caller's model under its feet
                checkpoint = copy.deepcopy(checkpoint).to_inference_dtype(want)
            self.model = checkpoint.to(device).eval()
            self.processor = VLAProcessor(self.model.cfg, load_tokenizer(self.model.cfg))
        else:
            self.model, self.processor = load_model(checkpoint, device, dtype)
        self.dtype = want
        cfg = self.model.cfg
        self.cameras = tuple(cfg.inputs.cameras if cameras is None else cameras)
        unknown = [c for c in self.cameras if c not in CAMERA_NAMES]
        if unknown or not self.cameras:
            raise ValueError(f"cameras must be a non-empty subset of {CAMERA_NAMES}, got {self.cameras}")
        self.image_hw = (cfg.inputs.image_height, cfg.inputs.image_width)
        self.num_samples, self.temperature, self.top_p = int(num_samples), float(temperature), float(top_p)
        self.flow_steps, self.fast = int(flow_steps), bool(fast) or not getattr(cfg.inputs, "use_coc", True)
        self.select = check_select(select, self.num_samples, self.fast)
        check_diagnostics(reasoning, steering, self.fast)
        self.reasoning, self.steering = reasoning, steering
        # the labeler's expert, run alongside for privileged reasoning and/or steering
        self._reasoner = PrivilegedReasoner(seed) if "privileged" in (reasoning, steering) else None
        self.own_coc_steps = 0  # privileged reasoning: inferences the labeler had no label for
        self.noise_temperature = None if noise_temperature is None else float(noise_temperature)
        self.seed, self.device, self.threads = int(seed), device, threads
        self.max_new_tokens, self.use_nav, self.name = max_new_tokens, bool(use_nav), name
        self._session: SessionInfo | None = None
        self._frames: dict[str, list[CameraFrame]] = {}
        self._inferences = 0
        self.cache_vision = bool(cache_vision)
        self.speculative = bool(speculative)
        self._draft: NgramDraft | None = None  # this rollout's CoCs, for speculative decoding
        self.replan_every_us = int(round(replan_every_s * 1e6))
        self._last: tuple[Plan, np.ndarray] | None = None  # (last inferred plan, its (x, y, yaw) in local)
        self._image_keys: list[tuple[str, int]] = []  # (camera, t_end_us) per image of the last sample
        self._vision_store: dict = {}
        self.warmup_reason: str | None = None
        self.last_inputs: dict | None = None  # the sample dict of the last inference (tests, debugging)

    # ---- Policy protocol ------------------------------------------------------------------------
    def start(self, session: SessionInfo) -> None:
        offered = tuple(session.camera_names)
        missing = [c for c in self.cameras if c not in offered]
        if missing:  # without them it would warm up forever and fail only after force-GT
            raise ValueError(f"VLAPolicy needs cameras {list(self.cameras)}; the session renders "
                             f"{list(offered) or 'no cameras'} (missing {missing})")
        if self.threads:
            torch.set_num_threads(int(self.threads))
        self._session = session
        self._frames = {c: [] for c in self.cameras}
        self._inferences = 0
        self._vision_store = {}
        self._draft = NgramDraft() if self.speculative else None
        self._last = None
        self.warmup_reason = None
        self.last_inputs = None
        self.own_coc_steps = 0
        if self._reasoner is not None:
            self._reasoner.start(session)

    def observe_world(self, world_state, scenario) -> None:
        """Privileged state for ``reasoning`` / ``steering="privileged"`` (the runtime calls it
        before ``plan``); ignored otherwise — the model itself never sees it."""
        if self._reasoner is not None:
            self._reasoner.observe_world(world_state, scenario)

    def close(self) -> None:
        self._frames = {}
        self._vision_store = {}
        self._draft = None
        self._last = None
        self.last_inputs = None

    def plan(self, observation: Observation, t_now_us: int, t_query_us: int) -> Plan:
        if self._session is None:
            raise RuntimeError("VLAPolicy.plan called before start(session)")
        c0 = time.perf_counter()
        t0 = int(t_now_us)
        self.observe(observation, t0)
        # the labeler's expert runs every step, as in a continuous drive (its memory of stops served)
        expert_plan, forced = (None, None) if self._reasoner is None else self._reasoner.step(observation, t0, t_query_us)
        if self.reasoning != "privileged":
            forced = None
        sample, reason = self._inputs(observation, t0)
        if sample is None:
            self.warmup_reason = reason
            return Plan(t_us=np.array([t0], dtype=np.int64), xyz_rig=np.zeros((1, 3)), yaw_rig=np.zeros(1),
                        warming_up=True)
        self.warmup_reason = None
        if self._last is not None and t0 - int(self._last[0].t_us[0]) < self.replan_every_us:
            held = self._reanchor(observation, t0)
            if held is not None:
                return held
        self.last_inputs = sample
        gen = torch.Generator().manual_seed(inference_seed(self.seed, self._session.seed, self._inferences))
        self._inferences += 1
        with torch.inference_mode():  # the runtime may call plan from its worker thread
            c1 = time.perf_counter()
            batch = _device_batch(self.processor(sample), self.device)
            pre_ms = (time.perf_counter() - c1) * 1e3 + (c1 - c0) * 1e3
            store = self._vision_store if self.cache_vision else None
            coc_kw = {"max_new_tokens": self.max_new_tokens}
            if forced is not None:
                coc_kw = self._forcing(forced)
            elif self.reasoning == "privileged":
                self.own_coc_steps += 1
            out = self.model.sample_trajectories(
                batch, num_samples=self.num_samples, temperature=self.temperature, top_p=self.top_p,
                flow_steps=self.flow_steps, fast=self.fast, generator=gen, noise_temperature=self.noise_temperature,
                image_keys=self._image_keys, image_store=store, draft=self._draft, **coc_kw)
            if store is not None:  # keep only frames a later step can still use
                self._vision_store = {k: store[k] for k in self._image_keys}
            cocs = []
            if not self.fast:
                n = 1 if self.select == "first" else self.num_samples
                cocs = self.processor.decode_text(out.coc_token_ids[0, :n], "cot")
        xyz = out.xyz[0].double().cpu().numpy()  # (K, T, 3)
        yaw = torch.atan2(out.rot[0, ..., 1, 0], out.rot[0, ..., 0, 0]).double().cpu().numpy()  # (K, T)
        if self.steering == "privileged":
            for k in range(len(xyz)):
                xyz[k, :, :2], yaw[k] = on_path(xyz[k, :, :2], expert_plan.xyz_rig[:, :2], expert_plan.yaw_rig)
        t_us, plans = self._to_plan_arrays(t0, xyz, yaw)
        c2 = time.perf_counter()
        if self.select == "consistent":
            order = self._order(cocs, xyz, yaw, sample)
        elif self.select == "medoid":
            order = medoid_order(xyz[..., :2])
        else:
            order = list(range(len(plans)))
        select_ms = (time.perf_counter() - c2) * 1e3
        plans = [plans[k] for k in order]
        coc = cocs[order[0]] if cocs else None
        decisions = None
        if coc is not None:
            rec = parse(coc)
            decisions = {"longitudinal": rec.longitudinal, "lateral": rec.lateral,
                         "lateral_direction": rec.lateral_direction}
        tm = out.timings_ms
        timing = {"preprocess": pre_ms, "vision": tm.get("vision_ms", 0.0), "prefill": tm.get("prefill_ms", 0.0),
                  "decode": tm.get("decode_ms", 0.0), "expert": tm.get("expert_ms", 0.0), "select": select_ms,
                  "total": (time.perf_counter() - c0) * 1e3}
        plan = Plan(t_us=t_us, xyz_rig=plans[0][0], yaw_rig=plans[0][1], alternatives=tuple(plans[1:]), coc=coc,
                    decisions=decisions, timing_ms=timing)
        if self.replan_every_us:
            self._last = (plan, _pose2d_at(observation.ego_history, t0))
        return plan

    def _forcing(self, coc: str) -> dict:
        """``sample_trajectories`` arguments that make every sample write ``coc``."""
        ids = self.model.ids
        seq = self.processor.tokenizer.encode(coc, add_special_tokens=False) + [ids["<|cot_end|>"],
                                                                                 ids["<|traj_future_start|>"]]
        targets = torch.tensor([seq] * self.num_samples)
        return {"logits_processor": forcing(targets), "max_new_tokens": len(seq)}

    @staticmethod
    def _order(cocs: list[str], xyz: np.ndarray, yaw: np.ndarray, sample: dict) -> list[int]:
        """Sample indices, the one whose CoC agrees best with its own trajectory first (then the
        rest in index order): ``consistency`` score against the same 1.5 s history the model saw."""
        from cordillera.reasoning.consistency import consistency

        hist_xy = sample["ego_history_xyz"].double().numpy()[:, :2]
        rot = sample["ego_history_rot"].double().numpy()
        hist_yaw = np.arctan2(rot[:, 1, 0], rot[:, 0, 0])
        scores = [consistency(c, xyz[k, :, :2], hist_xy, yaw[k], hist_yaw).score for k, c in enumerate(cocs)]
        best = int(np.argmax(scores))  # the first maximum: ties keep sample 0
        return [best] + [k for k in range(len(xyz)) if k != best]

    def _reanchor(self, obs: Observation, t0: int) -> Plan | None:
        """The last inferred plan's remaining poses in the rig frame at t0 (pose 0 = origin), or None
        when it would cover less than ``MIN_HELD_HORIZON_US`` (then the model runs)."""
        c0 = time.perf_counter()
        last, (x_p, y_p, yaw_p) = self._last
        t_old = np.asarray(last.t_us, dtype=np.int64)
        t_new = t0 + FUTURE_PERIOD_US * np.arange(int((t_old[-1] - t0) // FUTURE_PERIOD_US) + 1, dtype=np.int64)
        if t_new[-1] - t0 < MIN_HELD_HORIZON_US:
            return None
        # old rig frame -> local -> rig frame at t0 (plans are planar: z = 0, yaw only)
        xo, yo = np.asarray(last.xyz_rig)[:, 0], np.asarray(last.xyz_rig)[:, 1]
        yaw_o = np.unwrap(np.asarray(last.yaw_rig))
        cp, sp = np.cos(yaw_p), np.sin(yaw_p)
        xl, yl = x_p + cp * xo - sp * yo, y_p + sp * xo + cp * yo
        x_n, y_n, yaw_n = _pose2d_at(obs.ego_history, t0)
        cn, sn = np.cos(yaw_n), np.sin(yaw_n)
        dx, dy = xl - x_n, yl - y_n
        xr, yr, yawr = cn * dx + sn * dy, -sn * dx + cn * dy, yaw_o + yaw_p - yaw_n
        xyz = np.zeros((len(t_new), 3))
        xyz[1:, 0], xyz[1:, 1] = np.interp(t_new[1:], t_old, xr), np.interp(t_new[1:], t_old, yr)
        yaw = np.zeros(len(t_new))
        yaw[1:] = np.interp(t_new[1:], t_old, yawr)
        return Plan(t_us=t_new, xyz_rig=xyz, yaw_rig=np.arctan2(np.sin(yaw), np.cos(yaw)), coc=last.coc,
                    decisions=last.decisions, planned_at_us=int(t_old[0]),
                    timing_ms={"total": (time.perf_counter() - c0) * 1e3})

    # ---- inputs ---------------------------------------------------------------------------------
    def observe(self, obs: Observation, t0: int) -> None:
        """Add the observation's frames (resized once, as for training) and drop frames no request
        can pick any more (older than the newest frame at or before t0 − 0.3 s). ``plan`` does this
        first; a caller that skips some plans (a shadow beside another driver) calls it in between."""
        for cam in self.cameras:
            buf = self._frames[cam]
            f = obs.cameras.get(cam)
            if f is not None and not any(b.t_end_us == f.t_end_us for b in buf):
                img = np.asarray(f.image)
                if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                    raise ValueError(f"camera {cam}: frame must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
                buf.append(CameraFrame(resize_like_training(img, self.image_hw), int(f.t_start_us), int(f.t_end_us)))
                buf.sort(key=lambda b: b.t_end_us)
            oldest = t0 + IMAGE_OFFSETS_US[0]
            keep_from = max(int(np.searchsorted([b.t_end_us for b in buf], oldest, side="right")) - 1, 0)
            del buf[:keep_from]

    def _inputs(self, obs: Observation, t0: int) -> tuple[dict | None, str | None]:
        """The processor's sample dict at t0, or (None, what is missing)."""
        t_req = t0 + np.asarray(IMAGE_OFFSETS_US, dtype=np.int64)
        images, keys = [], []
        for cam in self.cameras:
            idx = select_frames(self._frames[cam], t_req)
            if idx is None:
                have = [b.t_end_us for b in self._frames[cam]]
                return None, f"camera {cam}: no frames for {t_req.tolist()} µs yet (have {have})"
            keys += [(cam, self._frames[cam][i].t_end_us) for i in idx]
            images.append(np.stack([self._frames[cam][i].image for i in idx]).transpose(0, 3, 1, 2))  # (4, 3, H, W)
        hist = history_in_rig(obs.ego_history, t0)
        if hist is None:
            t = np.asarray(obs.ego_history.t_us)
            span = f"[{t[0]}, {t[-1]}]" if len(t) else "empty"
            return None, f"ego history {span} µs does not cover [{t0 + HISTORY_OFFSETS_US[0]}, {t0}] µs"
        nav = None
        if self.use_nav:
            nav = obs.nav_text if obs.nav_text is not None else nav_text_from_route(obs.route_rig)
        sample = {
            "image_frames": torch.from_numpy(np.ascontiguousarray(np.stack(images), dtype=np.uint8)),  # (N, 4, 3, H, W)
            "camera_indices": [CAMERA_NAMES.index(c) for c in self.cameras],
            "ego_history_xyz": torch.from_numpy(hist[0].astype(np.float32)),
            "ego_history_rot": torch.from_numpy(hist[1].astype(np.float32)),
            "nav_text": nav,
        }
        self._image_keys = keys
        return sample, None

    # ---- output ---------------------------------------------------------------------------------
    @staticmethod
    def _to_plan_arrays(t0: int, xyz: np.ndarray, yaw: np.ndarray):
        """(K, T, 3) positions and (K, T) yaws → plan times (T + 1,) and per sample (xyz (T + 1, 3),
        yaw (T + 1,)) with the origin at t0 first, z = 0 (yaw-only, spec/alpasim.md §2.2)."""
        K, T = yaw.shape
        t_us = t0 + FUTURE_PERIOD_US * np.arange(T + 1, dtype=np.int64)
        plans = []
        for k in range(K):
            p = np.zeros((T + 1, 3))
            p[1:, :2] = xyz[k, :, :2]
            plans.append((p, np.concatenate([[0.0], yaw[k]])))
        return t_us, plans


@dataclass(frozen=True)
class VLAPolicyFactory:
    """A picklable zero-argument factory for :func:`cordillera.sim.batch.run_batch` (Ray ships it to
    workers; each worker loads the checkpoint once, see :func:`load_model`)."""

    checkpoint: str
    kwargs: tuple[tuple[str, object], ...] = ()
    name: str = "vla"

    def __call__(self) -> VLAPolicy:
        return VLAPolicy(self.checkpoint, name=self.name, **dict(self.kwargs))

    def fingerprint(self) -> str:
        """sha256 over the checkpoint's config and weights and the policy options: `run_batch`
        resumes rollouts only when this is unchanged (a retrained model must not reuse old ones)."""
        import hashlib

        h = hashlib.sha256(repr(self.kwargs).encode())
        for name in ("config.json", "model.safetensors"):
            p = Path(self.checkpoint) / name
            if p.exists():
                with open(p, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
        return h.hexdigest()

    @staticmethod
    def from_spec(spec: str, name: str | None = None, **kwargs) -> "VLAPolicyFactory":
        """``"vla:<checkpoint dir>"`` (the ``sim run --policy`` form) → factory."""
        if not spec.startswith("vla:") or len(spec) <= 4:
            raise ValueError(f"expected 'vla:<checkpoint dir>', got {spec!r}")
        ckpt = spec[4:]
        if not Path(ckpt).is_dir():
            raise ValueError(f"checkpoint directory {ckpt!r} not found")
        return VLAPolicyFactory(ckpt, tuple(sorted(kwargs.items())), name or "vla")
