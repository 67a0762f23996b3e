"""Camera rig: the seven PhysicalAI-AV cameras on a passenger car, camera specs, YAML rigs.

A ``CameraSpec`` carries the fields of AlpaSim's ``CameraSpec`` / ``AvailableCamera``
(spec/alpasim.md §2.3): name (``logical_id``), model, resolution, principal point, pinhole focal
lengths or f-theta polynomials with ``max_angle``, and ``T_rig_camera`` = the pose of the camera
**optical** frame in the rig frame (AlpaSim's ``rig_to_camera``, spec/alpasim.md §1.2).

Mounts are plausible for a ~4.9 m passenger car whose rig origin is the rear-axle centre on the
ground: front cameras behind the windshield ~1.75 m ahead of the rear axle and ~1.45 m high,
cross cameras near the A-pillars yawed ±65°, rear cameras at the back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from cordillera.geometry.frames import T_rig_camera_optical
from cordillera.geometry.pose import Pose
from cordillera.render import camera_models as cm

__all__ = [
    "CAMERA_NAMES",
    "DEFAULT_MODEL_CAMERAS",
    "CAMERA_MOUNTS",
    "CameraMount",
    "CameraSpec",
    "Rig",
    "make_camera",
    "default_rig",
    "load_rig",
    "save_rig",
]

# PhysicalAI-AV feature names (spec/alpamayo_training_data.md §7.2), in the devkit's listing order
# used by Alpamayo's camera index (cross-left, front-wide, cross-right, rear-left, rear-tele,
# rear-right, front-tele).
CAMERA_NAMES = (
    "camera_cross_left_120fov",
    "camera_front_wide_120fov",
    "camera_cross_right_120fov",
    "camera_rear_left_70fov",
    "camera_rear_tele_30fov",
    "camera_rear_right_70fov",
    "camera_front_tele_30fov",
)
# The model's default four cameras, in this order (DESIGN.md §4).
DEFAULT_MODEL_CAMERAS = (
    "camera_cross_left_120fov",
    "camera_front_wide_120fov",
    "camera_cross_right_120fov",
    "camera_front_tele_30fov",
)
# [px] (H, W) camera image size of the model card, spec/alpamayo_model.md §2.2: what data generation and
# closed-loop evaluation render by default (a model resizes to its own input size after)
MODEL_CARD_IMAGE_HW = (320, 576)


@dataclass(frozen=True)
class CameraMount:
    fov_deg: float  # horizontal field of view [deg]
    xyz_rig_m: tuple[float, float, float]  # optical centre in the rig frame [m]
    yaw_deg: float  # > 0 looks left
    pitch_deg: float = 0.0  # > 0 looks down
    roll_deg: float = 0.0


CAMERA_MOUNTS: dict[str, CameraMount] = {
    "camera_front_wide_120fov": CameraMount(120.0, (1.75, 0.0, 1.45), 0.0),
    "camera_front_tele_30fov": CameraMount(30.0, (1.75, 0.10, 1.45), 0.0),
    "camera_cross_left_120fov": CameraMount(120.0, (2.05, 0.90, 1.25), 65.0, 4.0),
    "camera_cross_right_120fov": CameraMount(120.0, (2.05, -0.90, 1.25), -65.0, 4.0),
    "camera_rear_left_70fov": CameraMount(70.0, (0.95, 0.95, 1.20), 150.0, 4.0),
    "camera_rear_right_70fov": CameraMount(70.0, (0.95, -0.95, 1.20), -150.0, 4.0),
    "camera_rear_tele_30fov": CameraMount(30.0, (-1.20, 0.0, 1.40), 180.0),
}


@dataclass(frozen=True, eq=False)
class CameraSpec:
    """One camera: intrinsics in pixels (OpenCV pixel-centre convention) and its rig mount."""

    name: str
    model: str  # "pinhole" | "ftheta"
    width: int
    height: int
    cx: float
    cy: float
    T_rig_camera: Pose  # pose of the optical frame (z fwd, x right, y down) in the rig frame
    fx: float = 0.0  # pinhole only [px]
    fy: float = 0.0
    fw_poly: tuple[float, ...] = ()  # f-theta only: angle [rad] -> pixel distance
    bw_poly: tuple[float, ...] = ()  # f-theta only: pixel distance -> angle [rad]
    max_angle_rad: float = math.pi / 2
    fov_deg: float | None = None  # nominal horizontal field of view, informative

    def __post_init__(self):
        if self.model not in ("pinhole", "ftheta"):
            raise ValueError(f"camera {self.name}: model must be 'pinhole' or 'ftheta', got {self.model!r}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"camera {self.name}: resolution must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        if self.model == "pinhole" and not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"camera {self.name}: pinhole needs fx, fy > 0, got {self.fx}, {self.fy}")
        if self.model == "ftheta":
            if len(self.fw_poly) < 2 or len(self.bw_poly) < 2:
                raise ValueError(f"camera {self.name}: f-theta needs fw_poly and bw_poly")
            object.__setattr__(self, "fw_poly", tuple(float(c) for c in self.fw_poly))
            object.__setattr__(self, "bw_poly", tuple(float(c) for c in self.bw_poly))
            if not self.fw_poly[1] > 0:
                raise ValueError(f"camera {self.name}: fw_poly[1] (focal length) must be > 0")
        if not isinstance(self.T_rig_camera, Pose):
            raise ValueError(f"camera {self.name}: T_rig_camera must be a Pose")

    # -- projections ---------------------------------------------------------------------------
    @property
    def focal_px(self) -> float:
        """Focal length at the image centre [px] (fx for pinhole, dr/dθ at θ=0 for f-theta)."""
        return self.fx if self.model == "pinhole" else self.fw_poly[1]

    def project(self, points_cam) -> tuple[np.ndarray, np.ndarray]:
        """Optical-frame points (N, 3) -> pixels (N, 2), valid (N,) (in front / within max angle)."""
        return cm.project(self, points_cam)

    def unproject(self, uv) -> np.ndarray:
        """Pixels (N, 2) -> unit rays (N, 3) in the optical frame."""
        return cm.unproject(self, uv)

    def project_rig(self, points_rig) -> tuple[np.ndarray, np.ndarray]:
        """Rig-frame points (N, 3) -> pixels (N, 2), valid (N,) = projectable AND inside the image."""
        p_cam = self.T_rig_camera.inverse().apply(np.asarray(points_rig, dtype=np.float64))
        uv, valid = self.project(p_cam)
        return uv, valid & cm.in_image(uv, self.width, self.height)

    def rescaled(self, width: int, height: int) -> "CameraSpec":
        """Same lens and mount at another resolution (intrinsics scaled with the width)."""
        s = width / self.width
        sy = height / self.height
        if self.model == "pinhole":
            return replace(self, width=width, height=height, fx=self.fx * s, fy=self.fy * sy,
                           cx=(self.cx + 0.5) * s - 0.5, cy=(self.cy + 0.5) * sy - 0.5)
        fw = tuple(c * s for c in self.fw_poly)
        bw = tuple(c / s**i for i, c in enumerate(self.bw_poly))
        return replace(self, width=width, height=height, fw_poly=fw, bw_poly=bw,
                       cx=(self.cx + 0.5) * s - 0.5, cy=(self.cy + 0.5) * sy - 0.5)

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {
            "name": self.name, "model": self.model, "width": self.width, "height": self.height,
            "cx": self.cx, "cy": self.cy,
            "T_rig_camera": {"translation": self.T_rig_camera.translation.tolist(),
                             "quat_xyzw": self.T_rig_camera.quat_xyzw.tolist()},
            "fov_deg": self.fov_deg,
        }
        if self.model == "pinhole":
            d.update(fx=self.fx, fy=self.fy)
        else:
            d.update(fw_poly=list(self.fw_poly), bw_poly=list(self.bw_poly), max_angle_rad=self.max_angle_rad)
        return d

    @staticmethod
    def from_dict(d: dict) -> "CameraSpec":
        d = dict(d)
        T = d.pop("T_rig_camera")
        return CameraSpec(T_rig_camera=Pose(T["translation"], T["quat_xyzw"]),
                          **{k: (tuple(v) if k in ("fw_poly", "bw_poly") else v) for k, v in d.items()})


@dataclass(frozen=True)
class Rig:
    cameras: tuple[CameraSpec, ...]

    def __post_init__(self):
        names = [c.name for c in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"rig camera names must be unique, got {names}")
        if not names:
            raise ValueError("a rig needs at least one camera")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def camera(self, name: str) -> CameraSpec:
        for c in self.cameras:
            if c.name == name:
                return c
        raise ValueError(f"camera {name!r} is not in the rig; available: {self.names}")

    def __iter__(self):
        return iter(self.cameras)

    def __len__(self) -> int:
        return len(self.cameras)


def make_camera(
    name: str, mount: CameraMount, width: int = 576, height: int = 320, model: str = "ftheta",
    cubic: float = -0.05,
) -> CameraSpec:
    """A camera with the given mount and a lens whose horizontal FOV is ``mount.fov_deg``."""
    T = T_rig_camera_optical(mount.xyz_rig_m, math.radians(mount.yaw_deg), math.radians(mount.pitch_deg),
                             math.radians(mount.roll_deg))
    cx, cy = (width - 1) / 2, (height - 1) / 2
    if model == "pinhole":
        f = cm.pinhole_focal_for_fov(mount.fov_deg, width)
        return CameraSpec(name, "pinhole", width, height, cx, cy, T, fx=f, fy=f, fov_deg=mount.fov_deg)
    if model == "ftheta":
        fw, bw, max_angle = cm.ftheta_polys_for_fov(mount.fov_deg, width, height, cubic=cubic)
        return CameraSpec(name, "ftheta", width, height, cx, cy, T, fw_poly=fw, bw_poly=bw,
                          max_angle_rad=max_angle, fov_deg=mount.fov_deg)
    raise ValueError(f"model must be 'pinhole' or 'ftheta', got {model!r}")


def default_rig(cameras=None, height: int = 320, width: int = 576, model: str = "ftheta") -> Rig:
    """The PhysicalAI-AV rig (all seven cameras by default, or any subset in the given order)."""
    names = CAMERA_NAMES if cameras is None else tuple(cameras)
    unknown = [n for n in names if n not in CAMERA_MOUNTS]
    if unknown:
        raise ValueError(f"unknown camera(s) {unknown}; known: {list(CAMERA_NAMES)}")
    return Rig(tuple(make_camera(n, CAMERA_MOUNTS[n], width, height, model) for n in names))


def _camera_from_yaml_entry(e: dict, defaults: dict) -> CameraSpec:
    e = {**defaults, **e}
    if "name" not in e:
        raise ValueError(f"rig YAML camera entry needs a 'name': {e}")
    if "T_rig_camera" in e and ("fx" in e or "fw_poly" in e):  # a full spec (as written by save_rig)
        return CameraSpec.from_dict({k: v for k, v in e.items() if k not in ("preset",)})
    preset = e.get("preset", e["name"])
    mount = CAMERA_MOUNTS.get(preset)
    if "mount" in e:
        m = e["mount"]
        mount = CameraMount(float(m.get("fov_deg", e.get("fov_deg", mount.fov_deg if mount else 0.0))),
                            tuple(float(v) for v in m["xyz_m"]), float(m.get("yaw_deg", 0.0)),
                            float(m.get("pitch_deg", 0.0)), float(m.get("roll_deg", 0.0)))
    elif mount is not None and "fov_deg" in e:
        mount = replace(mount, fov_deg=float(e["fov_deg"]))
    if mount is None:
        raise ValueError(f"camera {e['name']!r}: no preset of that name and no 'mount' given")
    return make_camera(e["name"], mount, int(e.get("width", 576)), int(e.get("height", 320)),
                       e.get("model", "ftheta"), float(e.get("cubic", -0.05)))


def load_rig(path: str | Path) -> Rig:
    """Read a rig from YAML.

    Format: ``{defaults: {width, height, model}, cameras: [entry, ...]}`` where an entry is either
    ``{name, preset?, width?, height?, model?, fov_deg?, mount?: {xyz_m, yaw_deg, pitch_deg,
    roll_deg, fov_deg}}`` (preset = one of :data:`CAMERA_NAMES`, defaulting to ``name``) or a full
    spec as written by :func:`save_rig`.
    """
    try:
        d = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(d, dict) or not isinstance(d.get("cameras"), list):
        raise ValueError(f"{path}: a rig YAML needs a 'cameras' list")
    defaults = d.get("defaults", {}) or {}
    return Rig(tuple(_camera_from_yaml_entry(e, defaults) for e in d["cameras"]))


def save_rig(rig: Rig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump({"cameras": [c.to_dict() for c in rig]}, sort_keys=False))
