"""Data plumbing for training: open the PhysicalAI-AV dataset, split it by scenario, fit the action
normalisation statistics on the training split, and turn dataset samples into processor batches.

The split is by scenario (family, seed): every clip rendered from one scenario lands on the same
side, so validation never sees a scenario the model trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from cordillera.data import keys as K
from cordillera.model.processor import COT_TEXT

__all__ = ["cache_root", "history_trend_xy", "history_surprise_m", "hard_sample_weights", "scenario_key", "split_by_scenario", "split_clips", "open_splits", "ego_window", "fit_action_stats", "Collate",
           "SampleCache", "COT_TEXT", "PROMPT_BATCH", "nav_text_at", "LaneAhead", "lane_ahead", "lead_gap_m",
           "constant_velocity_history"]  # fmt: skip

CLIP_IDS = "clip_ids"
PROMPT_BATCH = "prompt_batch"  # batch key: the same rows as a prompt-only processor batch (for sampling)


def cache_root(data) -> Path:
    """Where the training caches of `data` (`DataSettings`) live: `cache_dir`, else <dir>/.cordillera/train_cache."""
    return Path(data.cache_dir) if data.cache_dir else Path(data.dir) / ".cordillera" / "train_cache"


def scenario_key(meta: dict, clip_id: str) -> tuple:
    """(family, seed) of a clip when its metadata has them, else the clip id alone."""
    if meta.get(K.SEED) is not None:
        return (str(meta.get(K.FAMILY, "")), int(meta[K.SEED]))
    return (clip_id,)


def split_by_scenario(keys: dict[str, tuple], val_fraction: float = 0.1, seed: int = 0,
                      val_seeds=None, train_seeds=None) -> tuple[list[str], list[str]]:  # fmt: skip
    """Clip ids → (train, val) by scenario. Explicit `val_seeds`/`train_seeds` (scenario seeds)
    win; otherwise round(val_fraction · #scenarios) scenarios (at least 1 when val_fraction > 0
    and there are ≥ 2) are drawn with a seeded permutation."""
    clips = sorted(keys)
    if val_seeds is not None or train_seeds is not None:
        vs = set(val_seeds or ())
        ts = set(train_seeds) if train_seeds is not None else None
        val = [c for c in clips if keys[c][-1] in vs]
        train = [c for c in clips if keys[c][-1] not in vs and (ts is None or keys[c][-1] in ts)]
        return train, val
    scen = sorted(set(keys.values()))
    n_val = int(round(val_fraction * len(scen)))
    if val_fraction > 0 and n_val == 0 and len(scen) >= 2:
        n_val = 1
    perm = np.random.default_rng(seed).permutation(len(scen))
    val_scen = {scen[i] for i in perm[:n_val]}
    return [c for c in clips if keys[c] not in val_scen], [c for c in clips if keys[c] in val_scen]


def split_clips(reader, data, seed: int = 0, clips=None) -> tuple[list[str], list[str]]:
    """(train, val) clip ids of `reader` for `data` (`DataSettings`): `split_by_scenario` on the
    clips' (family, seed), then validation made of undisturbed drives only — a held-out scenario's
    clip that carries a DART disturbance (`data.generate.clip_perturbation`) or a learner's drive
    (`clip_handover`) is dropped from both sides, so the validation set is the same expert driving
    whatever else the data holds. ``data.on_policy=False`` also leaves the learner's drives out of
    training (the same data without its DAgger share)."""
    from cordillera.data.generate import clip_handover, clip_perturbation

    clips = sorted(reader.clips() if clips is None else clips)
    metas = {cid: reader.metadata(cid) for cid in clips}
    keys = {cid: scenario_key(metas[cid], cid) for cid in clips}
    train, val = split_by_scenario(keys, data.val_fraction, seed, data.val_seeds, data.train_seeds)
    if not data.on_policy:
        train = [c for c in train if clip_handover(metas[c]) is None]
    return train, [c for c in val if clip_perturbation(metas[c]) is None and clip_handover(metas[c]) is None]


def open_splits(data, image_hw, cameras, seed: int = 0):
    """(PaiDataset, train Subset, val Subset) for `data` (`DataSettings`)."""
    from cordillera.data.dataset import PaiDataset

    ds = PaiDataset(data.dir, image_hw=image_hw, cameras=cameras, per=data.per,
                    frame_cache_frames=data.frame_cache_frames)  # fmt: skip
    train_clips, val_clips = split_clips(ds.reader, data, seed, sorted({c for c, _, _ in ds.index}))
    tr, va = set(train_clips), set(val_clips)
    train_idx = [i for i, (c, _, _) in enumerate(ds.index) if c in tr]
    val_idx = [i for i, (c, _, _) in enumerate(ds.index) if c in va]
    if data.cache:
        ds = SampleCache.build(ds, cache_root(data), workers=max(1, data.cache_workers))
    if data.max_train_samples is not None:
        train_idx = train_idx[: data.max_train_samples]
    if not train_idx:
        raise ValueError(f"{data.dir}: no training samples after the split ({len(ds.index)} samples, "
                         f"{len(train_clips) + len(val_clips)} clips, {len(val_clips)} held out)")
    return ds, Subset(ds, train_idx), Subset(ds, val_idx)


def ego_window(reader, clip_id: str, t0_us: int) -> tuple[np.ndarray, ...]:
    """History (16) and future (64) poses in the t0 rig frame, as `data.samples.build_sample`
    computes them, without touching the videos."""
    from cordillera.data.samples import EGO_MAX_GAP_US, FUTURE_OFFSETS_US, HISTORY_OFFSETS_US
    from cordillera.geometry.frames import to_frame
    from cordillera.geometry.pose import quat_to_matrix

    ego = reader.egomotion(clip_id)
    t0 = int(t0_us)
    xyz_h, q_h = ego.poses(t0 + np.asarray(HISTORY_OFFSETS_US, np.int64), upto_us=t0, max_gap_us=EGO_MAX_GAP_US)
    xyz_f, q_f = ego.poses(t0 + np.asarray(FUTURE_OFFSETS_US, np.int64), max_gap_us=EGO_MAX_GAP_US)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = quat_to_matrix(q_h[-1]), xyz_h[-1]
    hx, hr = to_frame(xyz_h, quat_to_matrix(q_h), T)
    fx, fr = to_frame(xyz_f, quat_to_matrix(q_f), T)
    return hx, hr, fx, fr


ROUTE_POINTS = 20  # [-] AlpaSim route observation: 20 rig-frame waypoints, spec/alpasim.md
ROUTE_LENGTH_M = 80.0  # [m] … every 80/19 m (sim/navigation.py)


def nav_text_at(reader, clip_id: str, t0_us: int) -> str | None:
    """Navigation text at t0 ("Turn left in 25m" / "Continue straight") from the route the ego
    drives: the rest of the clip's path in the t0 rig frame, resampled like the simulator's route
    observation (20 points, 80/19 m apart, NaN past the end). The expert follows its route, so
    this is the route the simulator would show; only its geometry is used, never the timing."""
    from cordillera.geometry.frames import to_frame
    from cordillera.geometry.pose import quat_to_matrix
    from cordillera.sim.navigation import nav_text_from_route

    ego = reader.egomotion(clip_id)
    t = np.arange(int(t0_us), int(ego.end_us) + 1, 100_000, dtype=np.int64)
    if len(t) < 2:
        return None
    xyz, q = ego.poses(t)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = quat_to_matrix(q[0]), xyz[0]
    rig, _ = to_frame(xyz, quat_to_matrix(q), T)
    xy = np.asarray(rig)[:, :2]
    s_m = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    want = np.arange(ROUTE_POINTS) * ROUTE_LENGTH_M / (ROUTE_POINTS - 1)
    route = np.full((ROUTE_POINTS, 2), np.nan)
    ok = want <= s_m[-1]
    route[ok, 0] = np.interp(want[ok], s_m, xy[:, 0])
    route[ok, 1] = np.interp(want[ok], s_m, xy[:, 1])
    return nav_text_from_route(route)


class LaneAhead:
    """The vision probe's targets for a simulated clip at t0 (`model.modeling.PROBE_FIELDS`): the
    ego's lateral offset from its lane's centre (left +) and heading relative to the lane, then
    the bearings (rig frame at t0) of the lane centre 10/20/30/40 m ahead along the lane.

    The lane comes from the clip's scenario map (rebuilt from the metadata's family and seed, as
    `data.generate.clip_scenario` does); the stored egomotion is in the anchor frame of the
    scenario's ego start. The lane is followed through single successors, or the one on the
    ego's route; a point past an intersection connector (which way the road goes there is the
    route's choice, not something the cameras show), past a fork off the route or past the map
    is invalid. Clips without a (family, seed) — real data — give no valid lane target.

    With ``lead=True`` (a probe with `LossConfig.vision_probe_lead`) the gap to the nearest object
    ahead follows (`lead_gap_m`, from the clip's obstacle table: real clips have one too).
    """

    MAX_OFFSET_M = 3.0  # the ego must be within this of a lane centre…
    MAX_HEADING_RAD = math.radians(45)  # …heading along it

    def __init__(self, reader, lead: bool = False):
        self.reader = reader
        self.lead = bool(lead)
        self._scenarios: dict[str, object] = {}
        self._obstacles: dict[str, object] = {}

    def _scenario(self, clip_id: str):
        if clip_id not in self._scenarios:
            from cordillera.data.generate import clip_scenario

            meta = self.reader.metadata(clip_id)
            ok = meta.get(K.SEED) is not None and meta.get(K.FAMILY)
            self._scenarios[clip_id] = clip_scenario(str(meta[K.FAMILY]), int(meta[K.SEED])) if ok else None
        return self._scenarios[clip_id]

    def __call__(self, clip_id: str, t0_us: int) -> tuple[np.ndarray, np.ndarray]:
        """(values (F,) in m / rad, valid (F,) bool)."""
        from cordillera.geometry.pose import quat_to_matrix
        from cordillera.model.modeling import PROBE_FIELDS

        sc = self._scenario(clip_id)
        values, valid = np.zeros(len(PROBE_FIELDS)), np.zeros(len(PROBE_FIELDS), dtype=bool)
        if sc is None and not self.lead:
            return values, valid
        xyz, q = self.reader.egomotion(clip_id).poses(np.asarray([int(t0_us)], np.int64))
        R = quat_to_matrix(q[0])
        yaw_anchor = math.atan2(R[1, 0], R[0, 0])
        if sc is not None:
            e = sc.ego
            c0, s0 = math.cos(e.yaw_rad), math.sin(e.yaw_rad)
            p = np.array([e.x_m + c0 * xyz[0, 0] - s0 * xyz[0, 1], e.y_m + s0 * xyz[0, 0] + c0 * xyz[0, 1]])
            values, valid = lane_ahead(sc, p, e.yaw_rad + yaw_anchor)
        if not self.lead:
            return values, valid
        if clip_id not in self._obstacles:
            self._obstacles[clip_id] = self.reader.obstacles(clip_id)
        gap = lead_gap_m(self._obstacles[clip_id], int(t0_us), xyz[0, :2], yaw_anchor)
        return np.append(values, 0.0 if gap is None else gap), np.append(valid, gap is not None)


LEAD_HALF_CORRIDOR_M = 1.0  # [m] an object whose box reaches this close to the ego's centre line is in its path
OBSTACLE_MAX_AGE_US = 100_000  # [µs] the obstacle table's sample used for t0 is at most one 10 Hz step older


def lead_gap_m(obstacles, t0_us: int, ego_xy, ego_yaw_rad: float) -> float | None:
    """Longitudinal gap [m] from the rig origin to the rear of the nearest object whose box reaches
    into the ego's corridor (|y| − width/2 < `LEAD_HALF_CORRIDOR_M`) ahead, in the rig frame at t0
    (the ego at `ego_xy`, `ego_yaw_rad` in the table's anchor frame); `LEAD_CLEAR_M` when none is
    within it; None when the table has no sample at or up to `OBSTACLE_MAX_AGE_US` before t0. Only
    the latest sample at or before t0 is used: nothing after t0."""
    from cordillera.model.modeling import LEAD_CLEAR_M

    t = obstacles[K.TIMESTAMP].to_numpy(np.int64) if len(obstacles) else np.zeros(0, np.int64)
    past = t[t <= int(t0_us)]
    if len(past) == 0 or int(t0_us) - past.max() > OBSTACLE_MAX_AGE_US:
        return None
    rows = obstacles[t == past.max()]
    c, s = math.cos(ego_yaw_rad), math.sin(ego_yaw_rad)
    dx, dy = rows["x"].to_numpy() - ego_xy[0], rows["y"].to_numpy() - ego_xy[1]
    x, y = c * dx + s * dy, -s * dx + c * dy
    rear = x - rows["length"].to_numpy() / 2
    ahead = (x > 0) & (np.abs(y) - rows["width"].to_numpy() / 2 < LEAD_HALF_CORRIDOR_M) & (rear < LEAD_CLEAR_M)
    return float(np.clip(rear[ahead].min(), 0.0, LEAD_CLEAR_M)) if ahead.any() else LEAD_CLEAR_M


def lane_ahead(scenario, xy_m, yaw_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """`LaneAhead`'s targets for an ego at map position `xy_m` (2,) heading `yaw_rad` in `scenario`'s
    map: (values (F,) in m / rad, valid (F,) bool)."""
    from cordillera.model.modeling import PROBE_AHEAD_M, PROBE_FIELDS

    values, valid = np.zeros(len(PROBE_FIELDS)), np.zeros(len(PROBE_FIELDS), dtype=bool)
    p = np.asarray(xy_m, dtype=np.float64)
    lanes = scenario.map.lanes
    found = None
    for lane_id, s_m, r_m, _ in scenario.map.nearest_lanes(p, max_dist_m=LaneAhead.MAX_OFFSET_M):
        dh = _wrap_rad(yaw_rad - float(lanes[lane_id].heading_at(s_m)))
        if abs(dh) <= LaneAhead.MAX_HEADING_RAD:
            found = (lanes[lane_id], s_m, r_m, dh)
            break
    if found is None:
        return values, valid
    lane, s_m, r_m, dh = found
    values[:2], valid[:2] = (r_m, dh), True
    cy, sy = math.cos(yaw_rad), math.sin(yaw_rad)
    for j, d_m in enumerate(PROBE_AHEAD_M, start=2):
        pt = _along(lanes, lane, s_m + d_m, scenario.ego.route_lane_ids)
        if pt is not None:
            dx, dy = pt - p
            values[j], valid[j] = math.atan2(-sy * dx + cy * dy, cy * dx + sy * dy), True
    return values, valid


def _wrap_rad(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _along(lanes: dict, lane, s_m: float, route: tuple[str, ...]) -> np.ndarray | None:
    """Map xy at arc length `s_m` along `lane`, continuing into its successors (see `LaneAhead`)."""
    while s_m > lane.length_m:
        s_m -= lane.length_m
        nxt = [n for n in lane.successors if n in lanes]
        if len(nxt) > 1:
            nxt = [n for n in nxt if n in route]
        if len(nxt) != 1 or lanes[nxt[0]].is_intersection:
            return None
        lane = lanes[nxt[0]]
    return lane.position(s_m)


def fit_action_stats(subset: Subset, action_cfg=None) -> dict:
    """`compute_action_stats` over the raw (accel, curvature) ground truth of every training sample."""
    from cordillera.action.unicycle import ActionSpaceConfig, compute_action_stats, traj_to_action

    action_cfg = action_cfg or ActionSpaceConfig()
    ds = subset.dataset
    reader = ds.reader
    win = [ego_window(reader, *ds.index[i][:2]) for i in subset.indices]
    hx, hr, fx, fr = (torch.as_tensor(np.stack([w[j] for w in win]), dtype=torch.float32) for j in range(4))
    raw = traj_to_action(hx, hr, fx, fr, action_cfg, normalize=False)  # (N, T, 2)
    return compute_action_stats(raw)


class Collate:
    """Dataset samples → one processor batch (+ `cot_text` labels). With `use_coc=False` the CoC
    is dropped (trajectory-only ablation)."""

    def __init__(self, processor, use_coc: bool = True, nav_dropout: float = 0.0, with_prompt: bool = False,
                 lane_ahead: LaneAhead | None = None, history_dropout: float = 0.0, coc_swap: float = 0.0,
                 coc_own: float = 0.0, own_cocs: dict[str, str] | None = None):  # fmt: skip
        self.processor = processor
        self.use_coc = use_coc
        self.lane_ahead = lane_ahead  # adds the vision probe's targets (model.modeling.LANE_AHEAD) to the batch
        self.nav_dropout = float(nav_dropout)
        self.history_dropout = float(history_dropout)
        self.coc_swap = float(coc_swap)
        if coc_own > 0 and own_cocs is None:
            raise ValueError("coc_own > 0 needs the own-CoC table (train.own_coc.sample_own_cocs)")
        self.coc_own = float(coc_own)
        self.own_cocs = own_cocs
        # Validation batches also carry the rows without their targets: sampling must start from the
        # prompt (ending with <|cot_start|>), never continue a teacher-forced CoC + trajectory tokens.
        self.with_prompt = bool(with_prompt)

    @staticmethod
    def _hashed(s: dict, share: float, salt: str = "") -> bool:
        """Whether sample `s` is in a fixed, hashed `share` of the samples (resume stays exact)."""
        import zlib

        return zlib.crc32(f"{salt}{s.get(K.CLIP_ID_KEY)}:{s.get(K.T0_US)}".encode()) % 10_000 < share * 10_000

    def _nav(self, s: dict) -> str | None:
        # Dropped for a fixed, hashed subset of samples: the model also learns the route-free
        # prompt (what guidance's unconditional branch uses).
        nav = s.get("nav_text")
        return None if nav and self.nav_dropout > 0 and self._hashed(s, self.nav_dropout) else nav

    def _history(self, s: dict) -> tuple:
        """(xyz, rot) the model reads: the driven history, or for the `history_dropout` share a
        constant-velocity one (`constant_velocity_history`); a different hash from the nav's."""
        xyz, rot = s[K.EGO_HISTORY_XYZ], s[K.EGO_HISTORY_ROT]
        if self.history_dropout > 0 and self._hashed(s, self.history_dropout, salt="history:"):
            return constant_velocity_history(xyz)
        return xyz, rot

    def _cocs(self, samples: list[dict]) -> list[str | None]:
        """The CoC each row's prompt carries: its label, or for the `coc_swap` share (hashed, its own
        salt) the label of the next row in the batch (cyclically) whose label differs — a reasoning
        that is not about this scene, as the model's own often is not — or for the `coc_own` share
        the stage-1 model's own CoC for this sample (`train.own_coc`); None without `use_coc`."""
        cocs = [s.get(K.COT_KEY) if self.use_coc else None for s in samples]
        if self.use_coc and self.coc_own > 0:
            from cordillera.train.own_coc import sample_key

            return [self.own_cocs[sample_key(s)] if self._hashed(s, self.coc_own, salt="own:") else c
                    for s, c in zip(samples, cocs)]  # fmt: skip
        if not self.use_coc or self.coc_swap <= 0:
            return cocs
        out = list(cocs)
        n = len(samples)
        for i, s in enumerate(samples):
            if self._hashed(s, self.coc_swap, salt="coc:"):
                other = next((cocs[(i + k) % n] for k in range(1, n) if cocs[(i + k) % n] != cocs[i]), None)
                out[i] = cocs[i] if other is None else other
        return out

    def __call__(self, samples: list[dict]) -> dict:
        items = []
        for s, coc in zip(samples, self._cocs(samples)):
            hist_xyz, hist_rot = self._history(s)
            items.append({
                K.IMAGE_FRAMES: torch.as_tensor(s[K.IMAGE_FRAMES]),
                K.CAMERA_INDICES: s[K.CAMERA_INDICES],
                K.EGO_HISTORY_XYZ: hist_xyz, K.EGO_HISTORY_ROT: hist_rot,
                K.EGO_FUTURE_XYZ: s[K.EGO_FUTURE_XYZ], K.EGO_FUTURE_ROT: s[K.EGO_FUTURE_ROT],
                K.COT_KEY: coc,
                "nav_text": self._nav(s),
            })  # fmt: skip
        batch = self.processor(items)
        if self.with_prompt:
            drop = (K.EGO_FUTURE_XYZ, K.EGO_FUTURE_ROT, K.COT_KEY)
            batch[PROMPT_BATCH] = self.processor([{k: v for k, v in it.items() if k not in drop} for it in items])
        if self.lane_ahead is not None:
            from cordillera.model.modeling import LANE_AHEAD, LANE_AHEAD_VALID

            vals = [self.lane_ahead(s[K.CLIP_ID_KEY], int(s[K.T0_US])) for s in samples]
            batch[LANE_AHEAD] = torch.as_tensor(np.stack([v for v, _ in vals]), dtype=torch.float32)
            batch[LANE_AHEAD_VALID] = torch.as_tensor(np.stack([m for _, m in vals]))
        batch[COT_TEXT] = [s.get(K.COT_KEY) or "" for s in samples]
        batch[CLIP_IDS] = [s.get(K.CLIP_ID_KEY) for s in samples]
        return batch


def constant_velocity_history(xyz) -> tuple[np.ndarray, np.ndarray]:
    """A history (H, 3) in the t0 rig frame → the same number of poses driven straight along +x at the
    last step's speed, ending at the origin, with identity rotations: the current speed stays, its
    trend and the heading's do not. (xyz (H, 3), rot (H, 3, 3)), float32."""
    xyz = np.asarray(xyz, dtype=np.float64)
    step_m = float(np.linalg.norm(xyz[-1, :2] - xyz[-2, :2]))
    out = np.zeros_like(xyz)
    out[:, 0] = -step_m * np.arange(len(xyz) - 1, -1, -1)
    return out.astype(np.float32), np.broadcast_to(np.eye(3, dtype=np.float32), (len(xyz), 3, 3)).copy()


HISTORY_TREND_S = 0.5  # [s] the history's last half second sets the extrapolated speed and turn rate


def history_trend_xy(hist_xyz, hist_rot, steps: int, dt_s: float = 0.1) -> np.ndarray:
    """(N, steps, 2) positions at dt_s, 2·dt_s, … of a car that drives on at the speed and yaw rate of
    its history's last ``HISTORY_TREND_S`` (constant turn rate and velocity from the t0 rig origin,
    heading +x). ``hist_xyz`` (N, H, 3), ``hist_rot`` (N, H, 3, 3) in the t0 rig frame, 10 Hz."""
    hist_xyz, hist_rot = np.asarray(hist_xyz, np.float64), np.asarray(hist_rot, np.float64)
    k = int(round(HISTORY_TREND_S / 0.1))
    yaw = np.arctan2(hist_rot[..., 1, 0], hist_rot[..., 0, 0])
    w = np.angle(np.exp(1j * (yaw[:, -1] - yaw[:, -1 - k]))) / HISTORY_TREND_S  # (N,) [rad/s]
    chord = np.linalg.norm(hist_xyz[:, -1, :2] - hist_xyz[:, -1 - k, :2], axis=-1)
    v = chord / (HISTORY_TREND_S * np.sinc(w * HISTORY_TREND_S / (2 * np.pi)))  # arc length, not chord [m/s]
    t = dt_s * np.arange(1, steps + 1)
    wt = w[:, None] * t[None]
    small = np.abs(w[:, None]) < 1e-6
    w_safe = np.where(small, 1.0, w[:, None])
    x = np.where(small, v[:, None] * t, v[:, None] * np.sin(wt) / w_safe)
    y = np.where(small, 0.5 * v[:, None] * w[:, None] * t**2, v[:, None] * (1.0 - np.cos(wt)) / w_safe)
    return np.stack([x, y], -1)


def history_surprise_m(hist_xyz, hist_rot, future_xyz, dt_s: float = 0.1) -> np.ndarray:
    """How far each future (N, T, 3) strays from its history's trend: the mean distance [m] over the
    future poses between the ground truth and ``history_trend_xy``. 0 for a car that keeps its
    speed and curvature; large where something in the scene (a bend ahead, a red light, a braking
    lead) makes it change them — the samples a copycat gets wrong."""
    fut = np.asarray(future_xyz, np.float64)
    trend = history_trend_xy(hist_xyz, hist_rot, fut.shape[1], dt_s)
    return np.linalg.norm(fut[..., :2] - trend, axis=-1).mean(-1)


def hard_sample_weights(dataset, strength: float) -> np.ndarray:
    """Per-sample draw weights 1 + strength · e / mean(e) (``history_surprise_m``) of a
    `SampleCache` or a `Subset` of one (poses only: no frame is read)."""
    base, idx = (dataset.dataset, np.asarray(dataset.indices)) if isinstance(dataset, Subset) else (dataset, slice(None))
    if not isinstance(base, SampleCache):
        raise ValueError("hard_sample_weight needs the sample cache (data.cache: true)")
    a = base.arrays
    e = history_surprise_m(a[K.EGO_HISTORY_XYZ][idx], a[K.EGO_HISTORY_ROT][idx], a[K.EGO_FUTURE_XYZ][idx])
    return 1.0 + float(strength) * e / max(float(e.mean()), 1e-9)


# ----------------------------------------------------------------------------------------------
_ARRAY_KEYS = (K.EGO_HISTORY_XYZ, K.EGO_HISTORY_ROT, K.EGO_FUTURE_XYZ, K.EGO_FUTURE_ROT, K.CAMERA_INDICES)


class SampleCache(Dataset):
    """Every sample of a `PaiDataset`, decoded once (in clip order, so each video is read forward)
    and stored at the dataset's image size: frames in one uint8 `.npy` memory map, poses in an
    `.npz`, CoC and ids in JSON. Training then never decodes video (random access into H.264
    costs a GOP per frame). The directory is keyed by a hash of the sample list and image size,
    written to a temp dir and moved into place atomically; `index`/`reader` mirror the dataset's."""

    FRAMES, ARRAYS, META = "frames.npy", "arrays.npz", "meta.json"

    def __init__(self, directory: Path, dataset):
        self.dir = Path(directory)
        meta = json.loads((self.dir / self.META).read_text())
        self.index = [tuple(e) for e in meta["index"]]
        self.cots, self.clips, self.t0s = meta["cot"], meta["clip_id"], meta["t0_us"]
        self.navs = meta.get("nav_text") or [None] * len(self.index)
        self.frames = np.load(self.dir / self.FRAMES, mmap_mode="r")
        with np.load(self.dir / self.ARRAYS) as z:
            self.arrays = {k: z[k] for k in z.files}
        self.dataset = dataset

    @property
    def reader(self):
        return self.dataset.reader

    @staticmethod
    def key(dataset) -> str:
        h = hashlib.sha256(json.dumps(["v2-nav", str(dataset.root), list(dataset.image_hw or ()), list(dataset.cameras),
                                       [list(e) for e in dataset.index]]).encode())  # fmt: skip
        return h.hexdigest()[:16]

    @classmethod
    def build(cls, dataset, root: str | Path, workers: int = 1, progress: bool = True, nav: bool = True) -> "SampleCache":
        d = Path(root) / cls.key(dataset)
        if (d / cls.META).exists():
            return cls(d, dataset)
        n = len(dataset)
        tic = time.perf_counter()
        first = dataset[0]
        shape = tuple(first[K.IMAGE_FRAMES].shape)
        tmp = d.with_name(f".{d.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        frames = np.lib.format.open_memmap(tmp / cls.FRAMES, mode="w+", dtype=np.uint8, shape=(n, *shape))
        del frames
        # contiguous, clip-aligned ranges (dataset.index is clip-major, t0 ascending: videos read forward)
        bounds = [0] + [i for i in range(1, n) if dataset.index[i][0] != dataset.index[i - 1][0]] + [n]
        per = max(1, -(-(len(bounds) - 1) // max(1, workers * 4)))
        jobs = [(dataset, str(tmp / cls.FRAMES), bounds[j], bounds[min(j + per, len(bounds) - 1)], nav)
                for j in range(0, len(bounds) - 1, per)]  # fmt: skip
        if workers > 1 and len(jobs) > 1:
            from multiprocessing import get_context

            with get_context("spawn").Pool(workers) as pool:
                parts = pool.map(_cache_range, jobs, chunksize=1)
        else:
            parts = [_cache_range(j) for j in jobs]
        arrays = {k: np.concatenate([p[0][k] for p in parts]) for k in _ARRAY_KEYS}
        meta = {k: sum((p[1][k] for p in parts), []) for k in ("cot", "clip_id", "t0_us", "nav_text")}
        np.savez(tmp / cls.ARRAYS, **arrays)
        (tmp / cls.META).write_text(json.dumps({"index": [list(e) for e in dataset.index], **meta,
                                                "frames_shape": list(shape)}))  # fmt: skip
        if d.exists():
            shutil.rmtree(d)
        os.replace(tmp, d)
        if progress:
            print(f"sample cache: {n} samples in {time.perf_counter() - tic:.0f} s ({workers} workers) → {d}")
        return cls(d, dataset)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        s = {K.IMAGE_FRAMES: torch.from_numpy(np.array(self.frames[i]))}
        for k in _ARRAY_KEYS:
            s[k] = torch.from_numpy(self.arrays[k][i].copy())
        s[K.COT_KEY], s[K.CLIP_ID_KEY], s[K.T0_US] = self.cots[i], self.clips[i], self.t0s[i]
        s["nav_text"] = self.navs[i]
        return s


def _cache_range(job) -> tuple[dict, dict]:
    """Decode samples [lo, hi) into the shared frames file; return their small arrays and texts."""
    dataset, frames_path, lo, hi, nav = job
    frames = np.load(frames_path, mmap_mode="r+")
    arrays: dict[str, list] = {k: [] for k in _ARRAY_KEYS}
    meta: dict[str, list] = {"cot": [], "clip_id": [], "t0_us": [], "nav_text": []}
    for i in range(lo, hi):
        s = dataset[i]
        frames[i] = np.asarray(s[K.IMAGE_FRAMES])
        for k in _ARRAY_KEYS:
            arrays[k].append(np.asarray(s[k]))
        meta["cot"].append(s.get(K.COT_KEY))
        meta["clip_id"].append(s.get(K.CLIP_ID_KEY))
        meta["t0_us"].append(int(s[K.T0_US]))
        meta["nav_text"].append(nav_text_at(dataset.reader, s[K.CLIP_ID_KEY], int(s[K.T0_US])) if nav else None)
    frames.flush()
    del frames
    return {k: np.stack(v) if v else np.zeros((0,)) for k, v in arrays.items()}, meta
