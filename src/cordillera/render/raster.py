"""Pieces both renderers share: the pinhole pass each camera is rasterised into, the f-theta
remap maps, view transforms, per-pixel ground maps (fog / headlights) and rain streaks.

An f-theta camera is rendered as a wider **pinhole pass** (same focal length at the centre,
cropped to the rays the f-theta image needs) and warped with ``cv2.remap``; a pinhole camera is
rendered directly. :class:`FthetaView` holds what the GL renderer's direct f-theta path (no
tiles) needs instead. All pixel coordinates use the OpenCV convention (pixel centres at integers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from cordillera.geometry.pose import Pose, quat_from_matrix
from cordillera.render.camera_models import poly_eval
from cordillera.render.rig import CameraSpec
from cordillera.render.scene import Look, headlight_factor
from cordillera.world.scenario import AgentState

__all__ = ["PinholePass", "make_passes", "FthetaView", "make_ftheta_view", "ground_maps_for_rays", "finish", "T_local_camera", "T_local_tile", "tile_view", "ground_maps", "ground_look_maps", "apply_ground_look", "rain_streaks",
           "NEAR_M", "FAR_M"]

NEAR_M, FAR_M = 0.15, 5000.0  # [m] clip planes
MAX_PASS_ANGLE_RAD = math.radians(80.0)  # rays wider than this are left black in an f-theta image


@dataclass(frozen=True, eq=False)
class PinholePass:
    """A pinhole image (a "tile") that part of the camera image is resampled from. The tile's
    optical frame is the camera's optical frame rotated by ``R_cam_tile`` (a yaw about the
    camera's y axis), so wide f-theta lenses are covered by a few tiles that each stay within
    ~±35° of their own axis instead of one huge, peripherally oversampled pinhole."""

    cam: CameraSpec
    R_cam_tile: np.ndarray  # (3, 3) orientation of the tile frame in the camera optical frame
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    map_x: np.ndarray | None  # (H_out, W_out) float32: tile pixel of each output pixel (-10 = not here)
    map_y: np.ndarray | None

    @cached_property
    def fixed_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """The remap maps in OpenCV's fixed-point form (1/32 px), faster than float maps."""
        return cv2.convertMaps(self.map_x, self.map_y, cv2.CV_16SC2)

    @cached_property
    def out_cols(self) -> tuple[int, int]:
        """[first, last + 1) output columns that contain pixels of this tile."""
        cols = np.flatnonzero((self.map_x >= 0).any(axis=0))
        return (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (0, 0)

    @cached_property
    def out_col_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """:attr:`fixed_maps` cropped to :attr:`out_cols`, contiguous (a sliced view would be
        copied by OpenCV on every call)."""
        c0, c1 = self.out_cols
        m1, m2 = self.fixed_maps
        return np.ascontiguousarray(m1[:, c0:c1]), np.ascontiguousarray(m2[:, c0:c1])

    @cached_property
    def rig_tile_rt(self) -> tuple[np.ndarray, np.ndarray]:
        """(rotation (3, 3), translation (3,)) of ``T_rig_tile``, cached."""
        T = self.T_rig_tile
        return T.rotation_matrix, T.translation

    @property
    def T_rig_tile(self) -> Pose:
        return self.cam.T_rig_camera @ Pose(np.zeros(3), quat_from_matrix(self.R_cam_tile))

    def rays(self) -> np.ndarray:
        """(H, W, 3) tile-frame ray (z = 1) through every tile pixel."""
        u, v = np.meshgrid(np.arange(self.width), np.arange(self.height))
        return np.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy, np.ones_like(u, float)], axis=-1)


def finish(passes: list[PinholePass], images: list[np.ndarray]) -> np.ndarray:
    """Tile images -> camera image (identity for a single pinhole tile, else remap and add; the
    tiles' output pixels are disjoint)."""
    if len(passes) == 1 and passes[0].map_x is None:
        return images[0]
    if len(passes) == 1:
        m1, m2 = passes[0].fixed_maps
        return cv2.remap(images[0], m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    cam = passes[0].cam
    out = np.zeros((cam.height, cam.width, 3), np.uint8)
    for p, img in zip(passes, images):
        c0, c1 = p.out_cols  # remap only the columns this tile serves (others map outside -> black)
        m1, m2 = p.out_col_maps
        part = cv2.remap(img, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        np.add(out[:, c0:c1], part, out=out[:, c0:c1])  # disjoint: one of the two is 0 everywhere
    return out


def _yaw_about_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def make_passes(cam: CameraSpec, scale: float = 1.0, max_tile_half_angle_deg: float = 25.0) -> list[PinholePass]:
    """The pinhole tiles for ``cam``: the camera itself for a pinhole model; for f-theta, as few
    tiles (split by azimuth) as keep each within ``max_tile_half_angle_deg`` of its axis, each with
    focal ``scale · fw_poly[1]`` and cropped to the rays it serves."""
    eye = np.eye(3)
    if cam.model == "pinhole":
        return [PinholePass(cam, eye, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height, None, None)]
    f = scale * cam.focal_px
    u, v = np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64))
    rays = cam.unproject(np.column_stack([u.ravel(), v.ravel()]))
    theta = np.arccos(np.clip(rays[:, 2], -1, 1))
    ok = theta <= min(cam.max_angle_rad, MAX_PASS_ANGLE_RAD)
    az = np.arctan2(rays[:, 0], rays[:, 2])
    a0, a1 = az[ok].min(), az[ok].max()
    n = max(1, int(math.ceil((a1 - a0) / (2 * math.radians(max_tile_half_angle_deg)))))
    edges = np.linspace(a0, a1, n + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    passes = []
    for i in range(n):
        centre = 0.5 * (max(edges[i], a0) + min(edges[i + 1], a1))
        R = _yaw_about_y(centre) if n > 1 else eye
        mine = ok & (az >= edges[i]) & (az < edges[i + 1])
        d = rays @ R  # tile frame (R^T d for each row)
        good = mine & (d[:, 2] > 1e-6)
        x = np.where(good, d[:, 0] / np.where(good, d[:, 2], 1), np.nan)
        y = np.where(good, d[:, 1] / np.where(good, d[:, 2], 1), np.nan)
        x0, x1 = np.nanmin(x), np.nanmax(x)
        y0, y1 = np.nanmin(y), np.nanmax(y)
        cx, cy = -x0 * f + 2.0, -y0 * f + 2.0
        W = int(math.ceil((x1 - x0) * f)) + 5
        H = int(math.ceil((y1 - y0) * f)) + 5
        W += W % 2
        H += H % 2
        mx = (f * x + cx).reshape(cam.height, cam.width).astype(np.float32)
        my = (f * y + cy).reshape(cam.height, cam.width).astype(np.float32)
        mx[np.isnan(mx)] = -10.0
        my[np.isnan(my)] = -10.0
        passes.append(PinholePass(cam, R, f, f, cx, cy, W, H, mx, my))
    return passes


@dataclass(frozen=True, eq=False)
class FthetaView:
    """An f-theta camera rasterised directly: the renderer projects every (tessellated) vertex
    with the lens polynomial, so there are no tiles and no remap. Holds what the shaders and the
    background need, computed once per camera."""

    cam: CameraSpec
    rays: np.ndarray  # (H, W, 3) unit optical-frame ray of every pixel
    valid: np.ndarray  # (H, W) bool: θ ≤ theta_clip_rad (the rest is black, as in the tile path)
    theta_clip_rad: float  # geometry beyond this angle from the axis is clipped away
    theta_mono_rad: float  # the forward polynomial is increasing on [0, theta_mono_rad]
    tan_x_max: float  # every visible ray has |x/z| ≤ tan_x_max and |y/z| ≤ tan_y_max (culling)
    tan_y_max: float

    @property
    def width(self) -> int:
        return self.cam.width

    @property
    def height(self) -> int:
        return self.cam.height

    @cached_property
    def rig_tile_rt(self) -> tuple[np.ndarray, np.ndarray]:
        """(rotation, translation) of the camera in the rig: the view is its own single "tile",
        so :func:`tile_view` serves both paths."""
        T = self.cam.T_rig_camera
        return T.rotation_matrix, T.translation


def make_ftheta_view(cam: CameraSpec) -> FthetaView:
    """The :class:`FthetaView` of an f-theta camera; its clip angle is the one :func:`make_passes`
    leaves black beyond, so both paths cover the same pixels."""
    if cam.model != "ftheta":
        raise ValueError(f"camera {cam.name}: a direct f-theta view needs model 'ftheta', got {cam.model!r}")
    theta_clip = min(cam.max_angle_rad, MAX_PASS_ANGLE_RAD)
    u, v = np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64))
    rays = cam.unproject(np.column_stack([u.ravel(), v.ravel()]))
    theta = np.arccos(np.clip(rays[:, 2], -1, 1))
    # Culling bounds from the rays one pixel beyond the border (a pixel's footprint reaches ±0.5 px
    # past its centre), with θ limited to the clip angle; the border bounds the interior because
    # tan θ grows with the radius along every image direction.
    ring = np.array([(x, y) for x in (-1.0, cam.width) for y in np.arange(-1.0, cam.height + 1)]
                    + [(x, y) for y in (-1.0, cam.height) for x in np.arange(-1.0, cam.width + 1)])
    edge = cam.unproject(ring)
    edge_theta = np.minimum(np.arccos(np.clip(edge[:, 2], -1, 1)), theta_clip)
    tan_theta = np.tan(edge_theta) / np.maximum(np.hypot(edge[:, 0], edge[:, 1]), 1e-12)
    tan_x, tan_y = np.abs(edge[:, 0]) * tan_theta, np.abs(edge[:, 1]) * tan_theta
    th = np.linspace(0.0, math.pi, 4097)
    falling = np.flatnonzero(np.diff(poly_eval(cam.fw_poly, th)) <= 0)
    theta_mono = float(th[falling[0]]) if len(falling) else math.pi
    if theta_mono <= theta_clip:
        raise ValueError(f"camera {cam.name}: fw_poly stops increasing at θ = {theta_mono:.3f} rad, "
                         f"inside the clip angle {theta_clip:.3f} rad")
    return FthetaView(cam, rays.reshape(cam.height, cam.width, 3), (theta <= theta_clip).reshape(cam.height, cam.width),
                      float(theta_clip), theta_mono, float(tan_x.max()), float(tan_y.max()))


def T_local_camera(ego: AgentState, cam: CameraSpec) -> Pose:
    """Pose of the camera optical frame in local at the ego state (rig on the ground at ego z)."""
    return Pose.from_xy_yaw(ego.x_m, ego.y_m, ego.yaw_rad, ego.z_m) @ cam.T_rig_camera


def T_local_tile(ego: AgentState, p: PinholePass) -> Pose:
    """Pose of a pinhole tile's optical frame in local."""
    return Pose.from_xy_yaw(ego.x_m, ego.y_m, ego.yaw_rad, ego.z_m) @ p.T_rig_tile


def tile_view(ego: AgentState, p: PinholePass) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R, t, cam_pos): ``p_tile = R @ p_local + t`` and the tile's optical centre in local.
    The fast path of :func:`T_local_tile` (plain matrices, called per tile per frame)."""
    c, s = math.cos(ego.yaw_rad), math.sin(ego.yaw_rad)
    R_ego = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    R_rt, t_rt = p.rig_tile_rt
    R_lt = R_ego @ R_rt  # tile orientation in local
    pos = R_ego @ t_rt + np.array([ego.x_m, ego.y_m, ego.z_m])
    R = R_lt.T
    return R, -R @ pos, pos


@dataclass(frozen=True, eq=False)
class GroundMaps:
    """Per-pass-pixel factors for the flat ground (fixed in the rig, so fixed per camera)."""

    hits: np.ndarray  # (H, W) bool: the pixel's ray meets the ground within FAR_M
    dist_m: np.ndarray  # (H, W) distance camera -> ground point
    head: np.ndarray  # (H, W) headlight factor at the ground point


def ground_maps(p: PinholePass) -> GroundMaps:
    return ground_maps_for_rays(p.rays(), p.T_rig_tile)


def ground_maps_for_rays(rays_cam: np.ndarray, T_rig_cam: Pose) -> GroundMaps:
    """:class:`GroundMaps` for any ray grid: ``rays_cam`` (H, W, 3) in the optical frame whose pose
    in the rig is ``T_rig_cam`` (any length: distances come from the ground points)."""
    H, W = rays_cam.shape[:2]
    R, o = T_rig_cam.rotation_matrix, T_rig_cam.translation
    d = rays_cam.reshape(-1, 3) @ R.T  # rig frame
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d[:, 2] < -1e-9, -o[2] / d[:, 2], np.inf)
    pts = o + d * np.where(np.isfinite(t), t, 0)[:, None]
    dist = np.linalg.norm(pts - o, axis=1)
    hits = np.isfinite(t) & (dist < FAR_M)
    head = np.where(hits, headlight_factor(pts), 0.0)
    return GroundMaps(hits.reshape(H, W), np.where(hits, dist, np.inf).reshape(H, W), head.reshape(H, W))


def ground_look_maps(gm: GroundMaps, look: Look) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel (gain (H, W, 1), offset (H, W, 3)) so that a ground-lit, fogged pass image is
    ``img · gain + offset`` (gain 1, offset 0 where the ray misses the ground)."""
    light = look.light_scale + look.headlight_gain * gm.head
    fog = np.where(gm.hits, 1.0 - np.exp(-np.where(gm.hits, gm.dist_m, 0.0) / look.fog_distance_m), 0.0)
    gain = np.where(gm.hits, light * (1 - fog), 1.0)
    offset = fog[..., None] * np.asarray(look.fog_rgb)
    return gain[..., None].astype(np.float32), (255.0 * offset).astype(np.float32)


def apply_ground_look(img_f: np.ndarray, gm: GroundMaps, look: Look) -> np.ndarray:
    """Darken (night), headlight-brighten and fog the ground pixels of a float (0..1) pass image."""
    gain, offset = ground_look_maps(gm, look)
    return img_f * gain + offset / 255.0


def rain_streaks(img: np.ndarray, t_us: int, camera: str, n: int = 140, brightness: float = 1.0) -> np.ndarray:
    """Light, slanted rain streaks, deterministic in (camera, t_us); ``brightness`` follows the
    scene light (faint at night)."""
    h, w = img.shape[:2]
    seed = (int(t_us) // 1000 + sum(map(ord, camera)) * 7919) % (2**32)
    rng = np.random.default_rng(seed)
    out = img.copy()
    col = tuple(float(c * max(0.25, min(1.0, brightness))) for c in (200, 205, 215))
    x0 = rng.integers(0, w, n)
    y0 = rng.integers(0, h, n)
    length = rng.integers(h // 40 + 3, h // 12 + 6, n)
    for x, y, ln in zip(x0, y0, length):
        cv2.line(out, (int(x), int(y)), (int(x + ln * 0.15), int(y + ln)), col, 1, cv2.LINE_AA)
    return cv2.addWeighted(img, 0.6, out, 0.4, 0)
