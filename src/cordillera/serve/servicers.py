"""AlpaSim-compatible gRPC servicers over cordillera's in-process objects (spec/alpasim.md §2).

Each servicer converts protos to contracts with :mod:`cordillera.serve.convert`, calls the same
function the in-process runtime calls, and converts the answer back — no second implementation:

| service (proto)                         | calls                                                      |
|-----------------------------------------|------------------------------------------------------------|
| ``egodriver.EgodriverService``          | ``sim.runtime.build_observation`` → ``Policy.plan``        |
| ``nre.grpc.protos.sensorsim.SensorsimService`` | ``render.make_renderer(scenario, rig).render``      |
| ``controller.VDCService``               | ``sim.controller.plan_to_local`` + ``track``               |
| ``physics.PhysicsService``              | flat ground: poses returned unchanged                      |
| ``traffic.TrafficService``              | ``sim.traffic.init_traffic`` / ``step_traffic``            |

Sessions are keyed by ``session_uuid``; one server holds any number of concurrent sessions (a
lock per session, one for the table). Every RPC is guarded: malformed requests (NaN poses, empty
or undecodable images, missing fields, timestamps that do not chain) answer ``INVALID_ARGUMENT``
(``FAILED_PRECONDITION`` for a broken controller chain), unknown sessions or scenes ``NOT_FOUND``,
anything else ``INTERNAL`` with the exception text — the server itself never dies.

Scenes are cordillera scenario ids ``"<family>-<seed>"`` (e.g. ``road_following-01000``), rebuilt
with :func:`cordillera.world.generator.make` (pure and deterministic) and cached per server.

Precision (the wire is float32 for poses): the controller keeps each session's full-precision
state and uses it whenever the request's state equals it at wire precision (the normal closed
loop), so a remote controller integrates exactly like the in-process one; the request state wins
when it differs (physics corrections, force-GT with ``coerce_dynamic_state``). Steering is not on
the wire: after a coerced step it is re-estimated from yaw rate and speed (kinematic bicycle).
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable

import grpc
import numpy as np

from cordillera.geometry.pose import Pose
from cordillera.serve import convert
from cordillera.serve.stubs import (
    common_pb2,
    controller_pb2,
    controller_pb2_grpc,
    egodriver_pb2,
    egodriver_pb2_grpc,
    physics_pb2,
    physics_pb2_grpc,
    sensorsim_pb2,
    sensorsim_pb2_grpc,
    traffic_pb2,
    traffic_pb2_grpc,
    version_id,
)
from cordillera.sim.types import CameraFrame, Plan, Policy, SessionInfo

log = logging.getLogger(__name__)

__all__ = [
    "NotFoundError",
    "ChainError",
    "scenario_for_scene",
    "EgodriverService",
    "SensorsimService",
    "VDCService",
    "PhysicsService",
    "TrafficService",
    "DEFAULT_HISTORY_POSES",
    "plan_response",
    "HIDDEN_Z_M",
]

DEFAULT_HISTORY_POSES = 31  # = sim.runtime.SimConfig.history_poses (the driver cannot know the client's)
FRAME_BUFFER = 8  # frames kept per camera and session
EGO_BUFFER = 256  # egomotion poses kept per session
HIDDEN_Z_M = -50.0  # [m] AlpaSim lowers hidden actors by 100 m for NRE (spec/alpasim.md §1.3)
FORECAST_US = 100_000  # [µs] traffic: constant-velocity forecast pose after time_query (speed recovery)
_WIRE_POS_TOL_M = 1e-3  # [m] "same state at wire precision" (float32 at 10 km ≈ 1 mm)
_WIRE_ANG_TOL_RAD = 1e-5
_WIRE_RATE_TOL = 1e-3


class NotFoundError(LookupError):
    """Unknown session or scene -> NOT_FOUND."""


class ChainError(Exception):
    """A request that does not continue the session's timeline -> FAILED_PRECONDITION."""


def _guard(fn):
    """Run an RPC body; map exceptions to status codes and keep the server alive."""

    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            return fn(self, request, context)
        except NotFoundError as e:
            code, msg = grpc.StatusCode.NOT_FOUND, str(e)
        except ChainError as e:
            code, msg = grpc.StatusCode.FAILED_PRECONDITION, str(e)
        except ValueError as e:
            code, msg = grpc.StatusCode.INVALID_ARGUMENT, str(e)
        except Exception as e:  # noqa: BLE001 - report, never crash the server
            log.exception("%s.%s failed", type(self).__name__, fn.__name__)
            code, msg = grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"
        log.info("%s.%s -> %s: %s", type(self).__name__, fn.__name__, code.name, msg)
        context.abort(code, msg)

    return wrapper


def _session_id(request) -> str:
    sid = request.session_uuid
    if not sid:
        raise ValueError("session_uuid is empty")
    return sid


class _Sessions:
    """session_uuid -> session object, thread-safe."""

    def __init__(self, kind: str):
        self.kind = kind
        self._lock = threading.Lock()
        self._d: dict[str, object] = {}

    def put(self, sid: str, s) -> object | None:
        with self._lock:
            old = self._d.get(sid)
            self._d[sid] = s
            return old

    def get(self, sid: str):
        with self._lock:
            s = self._d.get(sid)
        if s is None:
            raise NotFoundError(f"unknown {self.kind} session {sid!r} (start_session first)")
        return s

    def pop(self, sid: str):
        with self._lock:
            s = self._d.pop(sid, None)
        if s is None:
            raise NotFoundError(f"unknown {self.kind} session {sid!r}")
        return s

    def __len__(self) -> int:
        with self._lock:
            return len(self._d)


# ----------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------
_SCENE_CACHE: OrderedDict = OrderedDict()
_SCENE_LOCK = threading.Lock()
_SCENE_CACHE_SIZE = 16


def scenario_for_scene(scene_id: str):
    """The cordillera :class:`Scenario` of a scene id ``"<family>-<seed>"`` (cached, LRU)."""
    from cordillera.world import generator

    if not scene_id:
        raise ValueError("scene_id is empty")
    with _SCENE_LOCK:
        if scene_id in _SCENE_CACHE:
            _SCENE_CACHE.move_to_end(scene_id)
            return _SCENE_CACHE[scene_id]
    family, _, seed = scene_id.rpartition("-")
    if not family or not seed.isdigit() or family not in generator.FAMILIES:
        raise NotFoundError(f"unknown scene {scene_id!r}: expected '<family>-<seed>' with a family in "
                            f"{sorted(generator.FAMILIES)}")
    sc = generator.make(family, int(seed))
    with _SCENE_LOCK:
        _SCENE_CACHE[scene_id] = sc
        while len(_SCENE_CACHE) > _SCENE_CACHE_SIZE:
            _SCENE_CACHE.popitem(last=False)
    return sc


def _check_scene(scene_id: str) -> None:
    scenario_for_scene(scene_id)


class _Rpcs:
    """RPC bodies several services share; listed first among the bases so that they override the
    generated servicers' UNIMPLEMENTED stubs. gRPC registers only the RPCs a service's proto
    declares, so a body its proto lacks (e.g. ``close_session`` for physics) is never served."""

    @_guard
    def get_version(self, request, context):
        return version_id()

    @_guard
    def get_available_scenes(self, request, context):  # procedural scenes: any scene id is served
        return common_pb2.AvailableScenesReturn(scene_ids=["*"])

    @_guard
    def close_session(self, request, context):
        self.sessions.pop(_session_id(request))
        return common_pb2.Empty()


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _DriverSession:
    policy: Policy
    info: SessionInfo
    lock: threading.Lock = field(default_factory=threading.Lock)
    frames: dict[str, list[CameraFrame]] = field(default_factory=dict)  # per camera, sorted by t_end
    ego_t: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ego_xyz: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    ego_q: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    ego_s12: np.ndarray = field(default_factory=lambda: np.zeros((0, 12)))
    route: tuple[int, np.ndarray] | None = None
    ground_truth: tuple | None = None
    n_drive: int = 0


def _nav_text_for_scene(scene_id: str) -> str | None:
    """Navigation text of a cordillera scene (what a navigation system would tell the driver)."""
    try:
        return scenario_for_scene(scene_id).ego.nav_text
    except (NotFoundError, ValueError):
        return None


class EgodriverService(_Rpcs, egodriver_pb2_grpc.EgodriverServiceServicer):
    """``egodriver.EgodriverService`` serving any cordillera :class:`~cordillera.sim.types.Policy`.

    ``policy_factory()`` builds one policy per session (policies keep per-session memory). The
    observation of ``drive`` is built by :func:`cordillera.sim.runtime.build_observation` from the
    session's buffers: the newest frame per camera ending at or before ``time_now_us``, the last
    ``history_poses`` egomotion poses at or before it, the newest route. The answer holds the plan
    as ``local→rig`` poses (pose 0 = the latest egomotion pose) and, in ``debug_info``, the sampled
    alternatives plus a JSON ``unstructured_debug_info`` (``reasoning_text``, ``decisions``,
    ``timing_ms``, ``warming_up``, ``invalid_plan``; AlpaSim's driver pickles a dict there — JSON
    cannot execute code on the reader). A warming-up plan is an empty trajectory; an invalid plan
    is an empty trajectory with ``invalid_plan`` set (the runtime fails it after force-GT)."""

    def __init__(self, policy_factory: Callable[[], Policy], history_poses: int = DEFAULT_HISTORY_POSES,
                 nav_text_lookup: Callable[[str], str | None] | None = _nav_text_for_scene):
        self.policy_factory = policy_factory
        self.history_poses = int(history_poses)
        self.nav_text_lookup = nav_text_lookup
        self.sessions = _Sessions("driver")

    @_guard
    def start_session(self, request, context):
        sid = _session_id(request)
        scene = request.debug_info.scene_id if request.HasField("debug_info") else ""
        cams = tuple(c.logical_id for c in request.rollout_spec.vehicle.available_cameras)
        if any(not c for c in cams):
            raise ValueError("rollout_spec.vehicle.available_cameras has an entry without logical_id")
        nav = self.nav_text_lookup(scene) if (scene and self.nav_text_lookup) else None
        info = SessionInfo(session_uuid=sid, scenario_id=scene, seed=int(request.random_seed), camera_names=cams,
                           nav_text=nav)
        policy = self.policy_factory()
        policy.start(info)
        old = self.sessions.put(sid, _DriverSession(policy, info))
        if old is not None:
            log.warning("driver session %s restarted", sid)
            _close_quietly(old.policy)
        return common_pb2.SessionRequestStatus()

    @_guard
    def close_session(self, request, context):
        s = self.sessions.pop(_session_id(request))
        with s.lock:
            s.policy.close()
        return common_pb2.Empty()

    @_guard
    def submit_image_observation(self, request, context):
        s = self.sessions.get(_session_id(request))
        if not request.HasField("camera_image"):
            raise ValueError("camera_image is missing")
        ci = request.camera_image
        if not ci.logical_id:
            raise ValueError("camera_image.logical_id is empty")
        t0, t1 = convert.from_wire_t(ci.frame_start_us), convert.from_wire_t(ci.frame_end_us)
        if t1 < t0:
            raise ValueError(f"frame_end_us {ci.frame_end_us} is before frame_start_us {ci.frame_start_us}")
        img = convert.decode_image(ci.image_bytes)
        with s.lock:
            buf = s.frames.setdefault(ci.logical_id, [])
            buf[:] = [f for f in buf if f.t_end_us != t1]
            buf.append(CameraFrame(img, t0, t1))
            buf.sort(key=lambda f: f.t_end_us)
            del buf[:-FRAME_BUFFER]
        return common_pb2.Empty()

    @_guard
    def submit_egomotion_observation(self, request, context):
        s = self.sessions.get(_session_id(request))
        t, xyz, q, s12 = convert.ego_history_from_proto(request.trajectory, request.dynamic_states)
        with s.lock:
            if len(t) and len(s.ego_t) and t[0] <= s.ego_t[-1]:
                raise ValueError(f"egomotion must continue after t={int(s.ego_t[-1])}, got a pose at t={int(t[0])}")
            s.ego_t = np.concatenate([s.ego_t, t])[-EGO_BUFFER:]
            s.ego_xyz = np.concatenate([s.ego_xyz, xyz])[-EGO_BUFFER:]
            s.ego_q = np.concatenate([s.ego_q, q])[-EGO_BUFFER:]
            s.ego_s12 = np.concatenate([s.ego_s12, s12])[-EGO_BUFFER:]
        return common_pb2.Empty()

    @_guard
    def submit_route(self, request, context):
        s = self.sessions.get(_session_id(request))
        t, wp = convert.route_from_proto(request.route)
        with s.lock:
            s.route = (t - convert.SCENE_EPOCH_US, wp)
        return common_pb2.Empty()

    @_guard
    def submit_recording_ground_truth(self, request, context):
        s = self.sessions.get(_session_id(request))
        gt = convert.trajectory_from_proto(request.ground_truth.trajectory)
        with s.lock:
            s.ground_truth = (convert.t_us_from_proto(request.ground_truth.timestamp_us), gt)
        return common_pb2.Empty()

    @_guard
    def drive(self, request, context):
        from cordillera.sim.runtime import build_observation

        s = self.sessions.get(_session_id(request))
        t_now, t_query = convert.from_wire_t(request.time_now_us), convert.from_wire_t(request.time_query_us)
        if t_query <= t_now:
            raise ValueError(f"time_query_us {request.time_query_us} must be after time_now_us {request.time_now_us}")
        with s.lock:
            hist = convert.ego_history_from_arrays(s.ego_t, s.ego_xyz, s.ego_q, s.ego_s12)
            frames = {}
            for cam, buf in s.frames.items():
                ok = [f for f in buf if f.t_end_us <= t_now]
                if ok:
                    frames[cam] = ok[-1]
            route = s.route[1] if s.route is not None else np.zeros((0, 3))
            obs = build_observation(t_now, frames, hist, route, s.info.nav_text, self.history_poses)
            debug = {"num_cameras": len(frames), "num_poses": len(obs.ego_history), "drive_index": s.n_drive}
            s.n_drive += 1
            if len(obs.ego_history) == 0:  # as AlpaSim's driver: nothing to plan from yet
                debug["warming_up"] = True
                return _drive_response(common_pb2.Trajectory(), debug, ())
            try:
                plan = s.policy.plan(obs, t_now, t_query)
            except Exception as e:  # noqa: BLE001 - a policy bug is the server's problem, not the request's
                raise RuntimeError(f"policy raised {type(e).__name__}: {e}") from e
        anchor_t = int(obs.ego_history.t_us[-1])
        T_local_rig = Pose(obs.ego_history.xyz_local[-1], obs.ego_history.quat_local[-1])
        return plan_response(plan, t_now, anchor_t, T_local_rig, debug)


def _close_quietly(policy) -> None:
    try:
        policy.close()
    except Exception:  # noqa: BLE001
        log.exception("policy.close() failed")


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _drive_response(traj, debug: dict, sampled) -> egodriver_pb2.DriveResponse:
    return egodriver_pb2.DriveResponse(
        trajectory=traj,
        debug_info=egodriver_pb2.DriveResponse.DebugInfo(
            unstructured_debug_info=json.dumps(debug, default=_json_default).encode(), sampled_trajectories=sampled))


def plan_response(plan, t_now: int, anchor_t: int, T_local_rig: Pose, debug: dict) -> egodriver_pb2.DriveResponse:
    """A policy's Plan as the egodriver DriveResponse (trajectory in the local frame, CoC and timing
    in the debug info); shared by the gRPC egodriver and the in-process wire mirror."""
    if not isinstance(plan, Plan):
        debug["invalid_plan"] = f"policy returned {type(plan).__name__}, expected Plan"
        return _drive_response(common_pb2.Trajectory(), debug, ())
    debug.update(reasoning_text=plan.coc, decisions=plan.decisions, timing_ms=plan.timing_ms,
                 warming_up=bool(plan.warming_up))
    if plan.warming_up:
        return _drive_response(common_pb2.Trajectory(), debug, ())
    try:
        plan.validate(t_now)
        traj = convert.plan_to_trajectory(plan, anchor_t, T_local_rig)
    except ValueError as e:
        debug["invalid_plan"] = str(e)
        return _drive_response(common_pb2.Trajectory(), debug, ())
    sampled = []
    for xyz, yaw in plan.alternatives:
        n = len(yaw)
        t_alt = np.asarray(plan.t_us)[:n] if n <= len(plan.t_us) else t_now + 100_000 * np.arange(n)
        try:
            xyz_l, q_l = convert.rig_path_to_local(T_local_rig, xyz, yaw)
            sampled.append(convert.trajectory_to_proto(np.asarray(t_alt) + convert.SCENE_EPOCH_US, xyz_l, q_l))
        except ValueError:  # a NaN alternative is dropped, the plan itself is fine
            continue
    return _drive_response(traj, debug, sampled)


# ----------------------------------------------------------------------------------------------
# Sensorsim (renderer)
# ----------------------------------------------------------------------------------------------
def _same_camera(a, b) -> bool:
    if a.model != b.model or a.width != b.width or a.height != b.height:
        return False
    close = functools.partial(np.allclose, rtol=1e-5, atol=1e-4)
    if not close([a.cx, a.cy], [b.cx, b.cy]):
        return False
    if a.model == "pinhole":
        return close([a.fx, a.fy], [b.fx, b.fy])
    return (len(a.fw_poly) == len(b.fw_poly) and close(a.fw_poly, b.fw_poly)
            and len(a.bw_poly) == len(b.bw_poly) and close(a.bw_poly, b.bw_poly))


class SensorsimService(_Rpcs, sensorsim_pb2_grpc.SensorsimServiceServicer):
    """``SensorsimService`` over :func:`cordillera.render.make_renderer`.

    The scene is a cordillera scenario id; cameras are ``rig``'s (default: the PhysicalAI-AV rig,
    f-theta, 320×576). A render request becomes a ``WorldState``: the ego rig pose is
    ``sensor_pose.end_pose ∘ rig_to_camera⁻¹`` (flat world: x, y, yaw), ``dynamic_objects`` are the
    actors (box centres; z below −50 m = hidden), static scenario actors missing from the request
    are added at their spec pose (AlpaSim does not send static actors — they are part of a NuRec
    scene), other actors are invisible, signals are ``signal_states(scenario, frame_end_us)``.
    Requested intrinsics/resolution other than the advertised camera's get their own renderer.
    Rendering runs on one worker thread (GL contexts are per thread)."""

    def __init__(self, rig=None, backend: str = "auto", max_scenes: int = 4):
        from cordillera.render.rig import default_rig

        self.rig = rig if rig is not None else default_rig()
        self.backend = backend
        self.max_scenes = int(max_scenes)
        self._renderers: OrderedDict = OrderedDict()  # (scene_id, camera signature) -> renderer
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @_guard
    def get_loaded_scenes(self, request, context):
        scenes: dict[str, int] = {}
        for sid, _ in list(self._renderers):
            scenes[sid] = scenes.get(sid, 0) + 1
        return sensorsim_pb2.LoadedScenesReturn(
            scenes=[sensorsim_pb2.LoadedSceneEntry(scene_id=k, loaded_instance_count=v) for k, v in scenes.items()],
            loaded_instance_capacity=self.max_scenes)

    @_guard
    def get_available_cameras(self, request, context):
        _check_scene(request.scene_id)
        return sensorsim_pb2.AvailableCamerasReturn(
            available_cameras=[convert.available_camera_to_proto(c) for c in self.rig])

    @_guard
    def get_available_ego_masks(self, request, context):
        return sensorsim_pb2.AvailableEgoMasksReturn()

    @_guard
    def render_rgb(self, request, context):
        return sensorsim_pb2.RGBRenderReturn(image_bytes=self._pool.submit(self._render, request, None).result())

    @_guard
    def batch_render_rgb(self, request, context):
        out = sensorsim_pb2.BatchRGBRenderReturn()
        for item in request.items:
            r = out.items.add(camera_name=item.camera_name)
            try:
                r.result.image_bytes = self._pool.submit(self._render, item.request, item.camera_name).result()
                r.success = True
            except NotFoundError as e:
                r.success, r.error_message = False, f"NOT_FOUND: {e}"
            except ValueError as e:
                r.success, r.error_message = False, f"INVALID_ARGUMENT: {e}"
            except Exception as e:  # noqa: BLE001 - one failed camera must not lose the others
                log.exception("batch_render_rgb item %s failed", item.camera_name)
                r.success, r.error_message = False, f"INTERNAL: {type(e).__name__}: {e}"
        return out

    # -- internals ---------------------------------------------------------------------------------
    def _camera(self, request, camera_name: str | None):
        name = camera_name or request.camera_intrinsics.logical_id
        if not name:
            raise ValueError("no camera: set camera_name (batch) or camera_intrinsics.logical_id")
        if name not in self.rig.names:
            raise ValueError(f"unknown camera {name!r}; available: {self.rig.names}")
        cam = self.rig.camera(name)
        h, w = int(request.resolution_h), int(request.resolution_w)
        if (h, w) == (0, 0):
            h, w = cam.height, cam.width
        if h <= 0 or w <= 0:
            raise ValueError(f"resolution must be positive, got {w}x{h}")
        wanted = cam if (h, w) == (cam.height, cam.width) else cam.rescaled(w, h)
        if request.HasField("camera_intrinsics") and request.camera_intrinsics.WhichOneof("camera_param"):
            spec = request.camera_intrinsics
            if (spec.resolution_w, spec.resolution_h) not in ((0, 0), (w, h)):
                # intrinsics given for the native sensor resolution: scale them to the render size
                c = convert.camera_spec_from_proto(spec, cam.T_rig_camera, name)
                wanted = c.rescaled(w, h)
            else:
                spec2 = type(spec)()
                spec2.CopyFrom(spec)
                spec2.resolution_w, spec2.resolution_h = w, h
                wanted = convert.camera_spec_from_proto(spec2, cam.T_rig_camera, name)
        return cam, wanted

    def _renderer(self, scene_id: str, scenario, cam, wanted):
        from cordillera.render import make_renderer
        from cordillera.render.rig import Rig

        native = _same_camera(cam, wanted)
        key = (scene_id, None if native else (wanted.name, wanted.model, wanted.width, wanted.height,
                                              round(wanted.cx, 3), round(wanted.cy, 3), round(wanted.focal_px, 3)))
        r = self._renderers.get(key)
        if r is None:
            r = make_renderer(scenario, self.rig if native else Rig((wanted,)), backend=self.backend)
            self._renderers[key] = r
            while len({k[0] for k in self._renderers}) > self.max_scenes:
                old_key, old = self._renderers.popitem(last=False)
                getattr(old, "close", lambda: None)()
        else:
            self._renderers.move_to_end(key)
        return r

    def _render(self, request, camera_name: str | None) -> bytes:
        from cordillera.sim.traffic import signal_states
        from cordillera.world.scenario import AgentState, WorldState

        scenario = scenario_for_scene(request.scene_id)
        cam, wanted = self._camera(request, camera_name)
        if not request.HasField("sensor_pose") or not request.sensor_pose.HasField("end_pose"):
            raise ValueError("sensor_pose.end_pose is missing")
        t0, t1 = convert.from_wire_t(request.frame_start_us), convert.from_wire_t(request.frame_end_us)
        if t1 < t0:
            raise ValueError(f"frame_end_us {request.frame_end_us} is before frame_start_us {request.frame_start_us}")
        T_local_cam = convert.pose_from_proto(request.sensor_pose.end_pose)
        T_local_rig = T_local_cam @ cam.T_rig_camera.inverse()
        ego = AgentState(x_m=float(T_local_rig.translation[0]), y_m=float(T_local_rig.translation[1]),
                         yaw_rad=T_local_rig.yaw_rad)
        specs = {a.id: a for a in scenario.actors}
        actors: dict[str, AgentState] = {}
        for i, obj in enumerate(request.dynamic_objects):
            if not obj.track_id:
                raise ValueError(f"dynamic_objects[{i}].track_id is empty")
            if not obj.pose_pair.HasField("end_pose"):
                raise ValueError(f"dynamic_objects[{i}] ({obj.track_id}) has no pose_pair.end_pose")
            p = convert.pose_from_proto(obj.pose_pair.end_pose)
            if obj.track_id not in specs:
                log.debug("render: ignoring unknown track %s", obj.track_id)
                continue
            actors[obj.track_id] = AgentState(x_m=float(p.translation[0]), y_m=float(p.translation[1]),
                                              yaw_rad=p.yaw_rad, visible=bool(p.translation[2] > HIDDEN_Z_M))
        for a in scenario.actors:
            if a.id not in actors:
                actors[a.id] = AgentState(x_m=a.x_m, y_m=a.y_m, yaw_rad=a.yaw_rad,
                                          visible=bool(a.is_static and t1 >= a.appear_us))
        ws = WorldState(t1, ego, actors, signal_states(scenario, t1))
        img = self._renderer(request.scene_id, scenario, cam, wanted).render(ws, wanted.name, t0, t1)
        return convert.encode_image(img, request.image_format, request.image_quality)


# ----------------------------------------------------------------------------------------------
# Controller (VDC)
# ----------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _VdcSession:
    lock: threading.Lock = field(default_factory=threading.Lock)
    t_us: int | None = None
    state: object | None = None  # full-precision AgentState at t_us
    ctrl: object | None = None  # ControllerState
    coerced_last: bool = True


def _wire_equal(a, pose: Pose, s12: np.ndarray) -> bool:
    """Is AgentState ``a`` the state (pose, 12-vector) at wire (float32) precision?"""
    d = convert.agent_dynamic12(a)
    dyaw = math.atan2(math.sin(a.yaw_rad - pose.yaw_rad), math.cos(a.yaw_rad - pose.yaw_rad))
    return (abs(a.x_m - pose.translation[0]) < _WIRE_POS_TOL_M and abs(a.y_m - pose.translation[1]) < _WIRE_POS_TOL_M
            and abs(dyaw) < _WIRE_ANG_TOL_RAD and bool(np.all(np.abs(d - s12) < _WIRE_RATE_TOL)))


class VDCService(_Rpcs, controller_pb2_grpc.VDCServiceServicer):
    """``controller.VDCService``: our tracking controller + AlpaSim bicycle (``sim.controller.track``).

    Per session: the last state (full precision), its timestamp and the controller memory. A
    request's ``state.timestamp_us`` must equal the previous ``future_time_us`` (AlpaSim's
    ``System`` requires it); states are reported every ``pose_reporting_interval_us`` (0 = only
    ``future_time_us``), chronologically, the last at ``future_time_us``. With
    ``coerce_dynamic_state`` (force-GT) the request state is taken as is and the controller memory
    starts afresh, as the in-process runtime resets it during force-GT."""

    def __init__(self, substep_us: int = 10_000):
        if substep_us <= 0:
            raise ValueError(f"substep_us must be > 0, got {substep_us}")
        self.substep_us = int(substep_us)
        self.sessions = _Sessions("controller")

    @_guard
    def start_session(self, request, context):
        if self.sessions.put(_session_id(request), _VdcSession()) is not None:
            log.warning("controller session %s restarted", request.session_uuid)
        return common_pb2.SessionRequestStatus()

    @_guard
    def run_controller_and_vehicle(self, request, context):
        from cordillera.sim.controller import ControllerState, plan_to_local, track

        s = self.sessions.get(_session_id(request))
        if not request.HasField("state"):
            raise ValueError("state is missing")
        t, pose, s12 = convert.state_at_time_from_proto(request.state)
        t -= convert.SCENE_EPOCH_US
        t_future = int(request.future_time_us) - convert.SCENE_EPOCH_US
        if t_future <= t:
            raise ValueError(f"future_time_us {request.future_time_us} must be after state.timestamp_us "
                             f"{request.state.timestamp_us}")
        interval = int(request.pose_reporting_interval_us) or (t_future - t)
        if interval < 0:
            raise ValueError(f"pose_reporting_interval_us must be >= 0, got {request.pose_reporting_interval_us}")
        pt, pxyz, pyaw = convert.rig_trajectory_from_proto(request.planned_trajectory_in_rig)
        if len(pt) == 0:
            raise ValueError("Planned trajectory is empty")
        with s.lock:
            if s.t_us is not None and t != s.t_us:
                raise ChainError(f"state.timestamp_us {request.state.timestamp_us} does not continue the session "
                                 f"(last future_time_us {convert.to_wire_t(s.t_us)})")
            coerce = bool(request.coerce_dynamic_state)
            if not coerce and s.state is not None and _wire_equal(s.state, pose, s12):
                ego, ctrl = s.state, s.ctrl
            else:
                steer = (s.state.steering_rad if (s.state is not None and not s.coerced_last and not coerce)
                         else convert.kinematic_steering(float(s12[0]), float(s12[5])))
                ego = convert.agent_state_from_pose_dynamic(pose, s12, steer)
                ctrl = s.ctrl if (s.ctrl is not None and not s.coerced_last and not coerce) else ControllerState()
            tr = plan_to_local(pt, pxyz, pyaw, ego)
            resp = controller_pb2.RunControllerAndVehicleModelResponse()
            tk = t
            while tk < t_future:
                t_next = min(tk + interval, t_future)
                ego, ctrl = track(ego, tr, ctrl, tk, t_next, self.substep_us)
                ego = replace(ego, yaw_rad=math.atan2(math.sin(ego.yaw_rad), math.cos(ego.yaw_rad)))
                p = convert.pose_to_proto(convert.ego_pose(ego))
                d = convert.dynamic_state_to_proto(convert.agent_dynamic12(ego))
                resp.states.add(timestamp_us=convert.to_wire_t(t_next), pose_local_to_rig=p, pose_local_to_rig_estimated=p,
                                dynamic_state=d, dynamic_state_estimated=d)
                tk = t_next
            last = resp.states[-1]
            resp.pose_local_to_rig.CopyFrom(common_pb2.PoseAtTime(pose=last.pose_local_to_rig,
                                                                  timestamp_us=convert.to_wire_t(t_future)))
            resp.pose_local_to_rig_estimated.CopyFrom(resp.pose_local_to_rig)
            resp.dynamic_state.CopyFrom(last.dynamic_state)
            resp.dynamic_state_estimated.CopyFrom(last.dynamic_state)
            s.t_us, s.state = t_future, ego
            s.ctrl = ControllerState() if coerce else ctrl
            s.coerced_last = coerce
        return resp


# ----------------------------------------------------------------------------------------------
# Physics
# ----------------------------------------------------------------------------------------------
class PhysicsService(_Rpcs, physics_pb2_grpc.PhysicsServiceServicer):
    """``physics.PhysicsService`` for flat-ground scenes: every pose comes back unchanged with
    ``SUCCESSFUL_UPDATE``, in request order, with the request's timestamps."""

    @_guard
    def ground_intersection(self, request, context):
        ok = physics_pb2.PhysicsGroundIntersectionReturn.Status.SUCCESSFUL_UPDATE
        out = physics_pb2.PhysicsGroundIntersectionReturn()
        for i, o in enumerate(request.other_objects):
            if not o.pose_pair.HasField("future_pose"):
                raise ValueError(f"other_objects[{i}].pose_pair.future_pose is missing")
            convert.aabb_from_proto(o.aabb)
            convert.pose_from_proto(o.pose_pair.future_pose)  # validates (NaN, zero quaternion)
            out.other_poses.add(pose=o.pose_pair.future_pose, status=ok)  # the very same values
        if request.HasField("ego_data"):
            convert.aabb_from_proto(request.ego_data.aabb)
            t, _ = convert.trajectory_poses_from_proto(request.ego_data.ego_trajectory_aabb)  # validates
            out.ego_trajectory_aabb.CopyFrom(request.ego_data.ego_trajectory_aabb)
            out.ego_status.extend([ok] * len(t))
        return out


# ----------------------------------------------------------------------------------------------
# Traffic
# ----------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _TrafficSession:
    scenario: object
    state: object  # sim.traffic.TrafficState
    lock: threading.Lock = field(default_factory=threading.Lock)
    ego_prev: tuple[int, float, float] | None = None  # (t, x, y) of the last ego rig origin


def _reference_from_logs(objs) -> object | None:
    """Logged object trajectories (non-EGO) -> a minimal reference ``Rollout`` for log replay."""
    from cordillera.sim.types import Rollout, StepRecord
    from cordillera.world.scenario import AgentState

    rows: dict[int, dict] = {}
    for o in objs:
        if o.object_id == "EGO":
            continue
        t, poses = convert.scene_trajectory_from_proto(o.trajectory)
        for ti, p in zip(t.tolist(), poses):
            rows.setdefault(int(ti), {})[o.object_id] = AgentState(x_m=float(p.translation[0]), y_m=float(p.translation[1]),
                                                                   yaw_rad=p.yaw_rad)
    if not rows:
        return None
    ego0 = AgentState(0.0, 0.0, 0.0)
    return Rollout("log", "log", "log", 0, steps=[StepRecord(t, ego0, rows[t], {}) for t in sorted(rows)])


class TrafficService(_Rpcs, traffic_pb2_grpc.TrafficServiceServicer):
    """``traffic.TrafficService`` over ``sim.traffic`` (IDM/MOBIL, walkers, scripts, log replay).

    ``start_session`` builds the scenario of ``scene_id`` and ``init_traffic`` (log-replay scenes
    replay ``logged_object_trajectories``); the session clock starts at the scenario's t = 0.
    ``simulate`` steps from the session time to ``time_query_us`` with the EGO pose of the update
    (box centre -> rig origin); the ego speed is the finite difference to the update's other pose
    (e.g. a forecast) or to the previous request's ego. The answer has, per visible actor, the
    pose at ``time_query_us`` and a constant-velocity forecast ``FORECAST_US`` later."""

    def __init__(self):
        self.sessions = _Sessions("traffic")

    @_guard
    def get_metadata(self, request, context):
        return traffic_pb2.TrafficModuleMetadata(version_id=version_id(), minimum_history_length_us=0)

    @_guard
    def start_session(self, request, context):
        from cordillera.sim.traffic import init_traffic

        sid = _session_id(request)
        sc = scenario_for_scene(request.scene_id)
        ref = _reference_from_logs(request.logged_object_trajectories) if sc.traffic_mode == "log" else None
        sess = _TrafficSession(sc, init_traffic(sc, ref))
        for o in request.logged_object_trajectories:
            if o.object_id == "EGO" and len(o.trajectory.poses):
                t, poses = convert.scene_trajectory_from_proto(o.trajectory)
                x, y, _, _ = convert.ego_from_box_pose(poses[0], sc.ego.rear_axle_to_center_m, sc.ego.height_m)
                sess.ego_prev = (int(t[0]), x, y)
        if self.sessions.put(sid, sess) is not None:
            log.warning("traffic session %s restarted", sid)
        return common_pb2.SessionRequestStatus()

    @_guard
    def simulate(self, request, context):
        from cordillera.sim.traffic import step_traffic
        from cordillera.world.scenario import AgentState

        s = self.sessions.get(_session_id(request))
        tq = convert.from_wire_t(request.time_query_us)
        sc = s.scenario
        e = sc.ego
        ego_updates = [u for u in request.object_trajectory_updates if u.object_id == "EGO"]
        if len(ego_updates) != 1:
            raise ValueError(f"expected exactly one EGO update, got {len(ego_updates)}")
        t, poses = convert.scene_trajectory_from_proto(ego_updates[0].trajectory)
        idx = np.flatnonzero(t == tq)
        if len(idx) != 1:
            raise ValueError(f"the EGO update needs a pose at time_query_us={request.time_query_us}, has "
                             f"{(t + convert.SCENE_EPOCH_US).tolist()}")
        i = int(idx[0])
        x, y, yaw, _ = convert.ego_from_box_pose(poses[i], e.rear_axle_to_center_m, e.height_m)
        with s.lock:
            t0 = int(s.state.t_us)
            if tq <= t0:
                raise ChainError(f"time_query_us {request.time_query_us} must be after the session time "
                                 f"{convert.to_wire_t(t0)}")
            j = i + 1 if i + 1 < len(t) else i - 1
            if j >= 0:
                xj, yj, _, _ = convert.ego_from_box_pose(poses[j], e.rear_axle_to_center_m, e.height_m)
                speed = math.hypot(xj - x, yj - y) / (abs(int(t[j]) - tq) * 1e-6)
            elif s.ego_prev is not None and s.ego_prev[0] < tq:
                speed = math.hypot(x - s.ego_prev[1], y - s.ego_prev[2]) / ((tq - s.ego_prev[0]) * 1e-6)
            else:
                speed = 0.0
            ego = AgentState(x_m=x, y_m=y, yaw_rad=yaw, speed_mps=speed)
            s.state, states = step_traffic(s.state, sc, ego, t0, tq - t0)
            s.ego_prev = (tq, x, y)
        out = traffic_pb2.TrafficReturn()
        specs = {a.id: a for a in sc.actors}
        dt = FORECAST_US * 1e-6
        for aid, st in states.items():
            if not st.visible:
                continue
            zc = 0.5 * specs[aid].height_m
            fx, fy = st.x_m + st.speed_mps * dt * math.cos(st.yaw_rad), st.y_m + st.speed_mps * dt * math.sin(st.yaw_rad)
            traj = convert.scene_trajectory_to_proto(
                [tq, tq + FORECAST_US],
                [convert.box_pose(st, zc), Pose.from_xy_yaw(fx, fy, st.yaw_rad + st.yaw_rate_radps * dt, zc)])
            out.object_trajectory_updates.add(object_id=aid, trajectory=traj)
        return out
