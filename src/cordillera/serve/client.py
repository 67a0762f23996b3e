"""The runtime as an AlpaSim-style gRPC client: our one event loop driving remote services.

The in-process :class:`~cordillera.sim.runtime.Simulator` stays the only loop; this module gives
it remote implementations of each role (spec/alpasim.md §1.4):

- :class:`RemoteRenderer` — the ``Renderer`` protocol over ``SensorsimService.batch_render_rgb``:
  the first camera asked for a frame renders every configured camera in one batch (AlpaSim's
  default ``BATCH_RENDER_RGB``); exactly one successful item per camera is required. Images keep
  their encoded bytes (:class:`EncodedImage`) so the driver receives them unchanged.
- :class:`RemotePolicy` — the ``Policy`` protocol over ``EgodriverService``: per step images,
  new egomotion poses (the first call sends the whole seeded history) and the route go out
  concurrently, then a **barrier**, then ``drive(time_now_us=t, time_query_us=t+dt)``; the
  ``local→rig`` answer becomes a rig-frame :class:`~cordillera.sim.types.Plan`.
- :class:`RemoteController` (``VDCService``: timestamps chained, ``coerce_dynamic_state`` during
  force-GT with the GT step as reference, states every ``pose_reporting_interval_us``),
  :class:`RemotePhysics` (``ground_intersection`` on the ego box; planar world: x, y, yaw kept),
  :class:`RemoteTraffic` (``simulate`` at ``t + dt`` with the EGO box pose; a pose at
  ``time_query_us`` is required for every returned object).
- :class:`GrpcSession` — the lifecycle hook: session setup in AlpaSim's order, session close,
  and ``rollout.asl`` (``RolloutMetadata`` first, then per step the entries in §5.3 order).

:func:`run_rollout_grpc` wires them for one rollout; :class:`GrpcRunFn` plugs that into
``sim.batch.run_batch`` (references run in-process; the privileged expert cannot be remote).
Every RPC has a deadline; a failed RPC raises :class:`ServiceError` naming the service, its
address, the method and the gRPC status, which fails the rollout (never the batch).
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import numpy as np

from cordillera.geometry.pose import Pose
from cordillera.serve import convert
from cordillera.serve.asl import AslWriter
from cordillera.serve.stubs import (
    common_pb2,
    controller_pb2,
    controller_pb2_grpc,
    egodriver_pb2,
    egodriver_pb2_grpc,
    logging_pb2,
    physics_pb2,
    physics_pb2_grpc,
    sensorsim_pb2,
    sensorsim_pb2_grpc,
    traffic_pb2,
    traffic_pb2_grpc,
    version_id,
)
from cordillera.sim.types import Plan, SessionInfo

__all__ = [
    "ServiceError",
    "ServiceAddresses",
    "Channels",
    "EncodedImage",
    "AslLog",
    "RemoteRenderer",
    "RemotePolicy",
    "RemoteController",
    "RemotePhysics",
    "RemoteTraffic",
    "GrpcSession",
    "run_rollout_grpc",
    "RemotePolicyFactory",
    "GrpcRunFn",
    "SENSORSIM_MAX_MESSAGE_BYTES",
]

SENSORSIM_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # spec/alpasim.md §2: sensorsim channel limits
RPC_TIMEOUT_S = 60.0  # per call; rendering and policies may be slow
READY_TIMEOUT_S = 30.0
FORECAST_US = 100_000  # [µs] EGO traffic update: constant-velocity forecast (lets the server get the speed)


class ServiceError(RuntimeError):
    """A remote service call failed (message: service, address, method, status, details)."""


@dataclass(frozen=True)
class ServiceAddresses:
    """``host:port`` of each service; None = that role runs in-process (AlpaSim's ``skip``)."""

    driver: str
    sensorsim: str | None = None
    controller: str | None = None
    physics: str | None = None
    traffic: str | None = None

    def items(self) -> list[tuple[str, str]]:
        return [(k, getattr(self, k)) for k in ("driver", "sensorsim", "controller", "physics", "traffic")
                if getattr(self, k)]


_STUBS = {"driver": egodriver_pb2_grpc.EgodriverServiceStub, "sensorsim": sensorsim_pb2_grpc.SensorsimServiceStub,
          "controller": controller_pb2_grpc.VDCServiceStub, "physics": physics_pb2_grpc.PhysicsServiceStub,
          "traffic": traffic_pb2_grpc.TrafficServiceStub}


def _rpc(service: str, address: str, method: str, fn, request, timeout: float = RPC_TIMEOUT_S, **kw):
    try:
        return fn(request, timeout=timeout, **kw)
    except grpc.RpcError as e:
        raise ServiceError(f"{service} service at {address} failed in {method}: {e.code().name}: {e.details()}") from None


def _result(service: str, address: str, method: str, fut, timeout: float = RPC_TIMEOUT_S):
    try:
        return fut.result(timeout=timeout)
    except grpc.RpcError as e:
        raise ServiceError(f"{service} service at {address} failed in {method}: {e.code().name}: {e.details()}") from None


class Channels:
    """One channel + stub per configured service (loopback or any host)."""

    def __init__(self, addresses: ServiceAddresses):
        self.addresses = addresses
        self.channels: dict[str, grpc.Channel] = {}
        self.stubs: dict[str, object] = {}
        for name, addr in addresses.items():
            opts = ([("grpc.max_send_message_length", SENSORSIM_MAX_MESSAGE_BYTES),
                     ("grpc.max_receive_message_length", SENSORSIM_MAX_MESSAGE_BYTES)] if name == "sensorsim" else [])
            ch = grpc.insecure_channel(addr, options=opts)
            self.channels[name] = ch
            self.stubs[name] = _STUBS[name](ch)

    def address(self, name: str) -> str:
        return getattr(self.addresses, name)

    def versions(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, common_pb2.VersionId]:
        """AlpaSim's startup probe: ``get_version`` (traffic: ``get_metadata``) with wait_for_ready."""
        out = {}
        for name, stub in self.stubs.items():
            addr = self.address(name)
            if name == "traffic":
                out[name] = _rpc(name, addr, "get_metadata", stub.get_metadata, common_pb2.Empty(), timeout_s,
                                 wait_for_ready=True).version_id
            else:
                out[name] = _rpc(name, addr, "get_version", stub.get_version, common_pb2.Empty(), timeout_s,
                                 wait_for_ready=True)
        return out

    def check_scene(self, scene_id: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Physics, traffic and sensorsim must list the scene or ``"*"``."""
        for name in ("physics", "traffic", "sensorsim"):
            if name in self.stubs:
                r = _rpc(name, self.address(name), "get_available_scenes", self.stubs[name].get_available_scenes,
                         common_pb2.Empty(), timeout_s, wait_for_ready=True)
                if "*" not in r.scene_ids and scene_id not in r.scene_ids:
                    raise ServiceError(f"{name} service at {self.address(name)} does not offer scene {scene_id!r}")

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()


class EncodedImage(np.ndarray):
    """A decoded HxWx3 uint8 image that remembers the bytes it was decoded from."""

    encoded: bytes = b""
    image_format: int = 0

    @staticmethod
    def wrap(rgb: np.ndarray, data: bytes, image_format: int) -> "EncodedImage":
        out = np.asarray(rgb).view(EncodedImage)
        out.encoded, out.image_format = data, image_format
        return out

    def __array_finalize__(self, obj):
        self.encoded = b""  # slices and copies no longer match the bytes
        self.image_format = 0


class AslLog:
    """Thread-safe ``rollout.asl`` writer (``None`` path = no log)."""

    def __init__(self, path: str | Path | None):
        self._w = AslWriter(path) if path is not None else None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._w is not None

    def write(self, **entry) -> None:
        if self._w is None:
            return
        with self._lock:
            if not self._w._f.closed:
                self._w.write(logging_pb2.LogEntry(**entry))

    def close(self) -> None:
        if self._w is not None:
            with self._lock:
                self._w.close()


_NO_LOG = AslLog(None)


# ----------------------------------------------------------------------------------------------
# Renderer
# ----------------------------------------------------------------------------------------------
def _actor_box_objects(scenario, ws) -> list:
    """Non-static visible actors as sensorsim ``DynamicObject`` (AlpaSim sends no static actors)."""
    out = []
    for a in scenario.actors:
        st = ws.actors.get(a.id)
        if st is None or a.is_static or not st.visible:
            continue
        p = convert.pose_to_proto(convert.box_pose(st, 0.5 * a.height_m))
        out.append(sensorsim_pb2.DynamicObject(track_id=a.id, pose_pair=sensorsim_pb2.PosePair(start_pose=p, end_pose=p)))
    return out


class RemoteRenderer:
    """``Renderer`` over a ``SensorsimService``; see the module docstring.

    ``cameras_to_render`` are the cameras the simulator will ask for each frame (``SimConfig.cameras``),
    rendered together in one ``batch_render_rgb``. The shutter has no motion here: the start and
    end sensor poses are both the committed pose at the frame end (our renderer has no rolling
    shutter). ``image_format`` is a sensorsim ``ImageFormat`` (JPEG q95 as AlpaSim, or PNG).

    ``decode=False`` skips decoding: the images carry their bytes (forwarded to a remote driver as
    received) but no pixels (shape ``(0, 0, 3)``). The loop never reads pixels itself, so only
    ``SimConfig.keep_images`` (videos, data) needs them — decoding 4 JPEGs is ~10 % of a step."""

    def __init__(self, channels: Channels, scenario, cameras_to_render=(), image_format: int = sensorsim_pb2.JPEG,
                 image_quality: float = 95.0, log: AslLog = _NO_LOG, timeout_s: float = RPC_TIMEOUT_S,
                 decode: bool = True):
        self.ch, self.addr = channels.stubs["sensorsim"], channels.address("sensorsim")
        self.scenario = scenario
        self.image_format, self.image_quality = int(image_format), float(image_quality)
        self.log, self.timeout_s, self.decode = log, timeout_s, bool(decode)
        req = sensorsim_pb2.AvailableCamerasRequest(scene_id=scenario.id)
        self.available_request = req
        self.available = _rpc("sensorsim", self.addr, "get_available_cameras", self.ch.get_available_cameras, req,
                              timeout_s, wait_for_ready=True)
        self.specs = {c.logical_id: c for c in self.available.available_cameras}
        self.cams = {name: convert.available_camera_from_proto(c) for name, c in self.specs.items()}
        self.ego_masks = _rpc("sensorsim", self.addr, "get_available_ego_masks", self.ch.get_available_ego_masks,
                              common_pb2.Empty(), timeout_s)
        missing = [c for c in cameras_to_render if c not in self.specs]
        if missing:
            raise ServiceError(f"sensorsim service at {self.addr} has no camera(s) {missing}; it offers {list(self.specs)}")
        self.cameras_to_render = tuple(cameras_to_render)
        self._key = None
        self._images: dict[str, EncodedImage] = {}

    def cameras(self) -> list[str]:
        return list(self.specs)

    def render(self, world_state, camera: str, t_start_us: int, t_end_us: int) -> np.ndarray:
        key = (id(world_state), world_state.t_us, int(t_start_us), int(t_end_us))
        if key != self._key or camera not in self._images:
            names = self.cameras_to_render if camera in self.cameras_to_render else (camera,)
            self._images = self._batch(world_state, names, t_start_us, t_end_us)
            self._key = key
        return self._images[camera]

    def request_for(self, world_state, camera: str, t_start_us: int, t_end_us: int) -> sensorsim_pb2.RGBRenderRequest:
        cam = self.cams[camera]
        sensor = convert.pose_to_proto(convert.ego_pose(world_state.ego) @ cam.T_rig_camera)
        return sensorsim_pb2.RGBRenderRequest(
            scene_id=self.scenario.id, resolution_h=cam.height, resolution_w=cam.width,
            camera_intrinsics=self.specs[camera].intrinsics, frame_start_us=convert.to_wire_t(t_start_us),
            frame_end_us=convert.to_wire_t(t_end_us),
            sensor_pose=sensorsim_pb2.PosePair(start_pose=sensor, end_pose=sensor),
            dynamic_objects=_actor_box_objects(self.scenario, world_state), image_format=self.image_format,
            image_quality=self.image_quality)

    def _batch(self, ws, names, t0: int, t1: int) -> dict[str, EncodedImage]:
        req = sensorsim_pb2.BatchRGBRenderRequest(items=[
            sensorsim_pb2.BatchRGBRenderRequestItem(camera_name=n, request=self.request_for(ws, n, t0, t1)) for n in names])
        self.log.write(batch_render_request=req)
        resp = _rpc("sensorsim", self.addr, "batch_render_rgb", self.ch.batch_render_rgb, req, self.timeout_s)
        got = [it.camera_name for it in resp.items]
        if sorted(got) != sorted(names):
            raise ServiceError(f"sensorsim service at {self.addr}: batch_render_rgb returned cameras {got} for "
                               f"requested {list(names)} (need exactly one item per camera)")
        out = {}
        for it in resp.items:
            if not it.success:
                raise ServiceError(f"sensorsim service at {self.addr}: rendering {it.camera_name} at t={t1} failed: "
                                   f"{it.error_message}")
            if not it.result.image_bytes:
                raise ServiceError(f"sensorsim service at {self.addr}: {it.camera_name} image at t={t1} is empty")
            if not self.decode:
                out[it.camera_name] = EncodedImage.wrap(np.empty((0, 0, 3), np.uint8), it.result.image_bytes,
                                                        self.image_format)
                continue
            rgb = convert.decode_image(it.result.image_bytes)
            cam = self.cams[it.camera_name]
            if rgb.shape != (cam.height, cam.width, 3):
                raise ServiceError(f"sensorsim service at {self.addr}: {it.camera_name} image is {rgb.shape}, expected "
                                   f"{(cam.height, cam.width, 3)}")
            out[it.camera_name] = EncodedImage.wrap(rgb, it.result.image_bytes, self.image_format)
        return out


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------
def _plan_from_response(resp: egodriver_pb2.DriveResponse, t_now: int, T_local_rig: Pose) -> Plan:
    try:
        debug = json.loads(resp.debug_info.unstructured_debug_info or b"{}")
        if not isinstance(debug, dict):
            debug = {}
    except (ValueError, UnicodeDecodeError):  # e.g. an AlpaSim driver's pickled dict: not ours to unpickle
        debug = {}
    t, xyz, yaw = convert.plan_arrays_from_trajectory(resp.trajectory, T_local_rig)
    alts = []
    for tr in resp.debug_info.sampled_trajectories:
        _, axyz, ayaw = convert.plan_arrays_from_trajectory(tr, T_local_rig)
        alts.append((axyz, ayaw))
    warming = len(t) == 0 and "invalid_plan" not in debug
    timing = dict(debug.get("timing_ms") or {})
    return Plan(t_us=t, xyz_rig=xyz, yaw_rig=yaw, alternatives=tuple(alts), coc=debug.get("reasoning_text"),
                decisions=debug.get("decisions"), timing_ms=timing, warming_up=warming)


class RemotePolicy:
    """``Policy`` over an ``EgodriverService`` (see the module docstring). ``name`` names the
    remote policy (rollout ids, outputs); ``available_cameras`` are the ``AvailableCamera`` protos
    declared in the session's ``rollout_spec`` (from the renderer)."""

    over_wire = True  # already float32 on the wire: SimConfig.wire_precision adds nothing
    # Every RPC carries a deadline, so plan() is bounded without the runtime's worker thread (whose
    # hand-off costs a thread switch per step); the runtime checks the timeout when it returns.
    runs_inline = True

    def __init__(self, channels: Channels, name: str = "grpc", available_cameras=(), log: AslLog = _NO_LOG,
                 image_format: int = sensorsim_pb2.JPEG, timeout_s: float = RPC_TIMEOUT_S):
        self.name = name
        self.stub, self.addr = channels.stubs["driver"], channels.address("driver")
        self.available_cameras = {c.logical_id: c for c in available_cameras}
        self.log, self.image_format, self.timeout_s = log, int(image_format), timeout_s
        self._session: SessionInfo | None = None
        self._last_ego_t: int | None = None

    def _call(self, method: str, request, **kw):
        return _rpc("driver", self.addr, method, getattr(self.stub, method), request, self.timeout_s, **kw)

    def start(self, session: SessionInfo) -> None:
        self._session, self._last_ego_t = session, None
        req = egodriver_pb2.DriveSessionRequest(
            session_uuid=session.session_uuid, random_seed=int(session.seed) % 2**64,
            debug_info=egodriver_pb2.DriveSessionRequest.DebugInfo(scene_id=session.scenario_id))
        req.rollout_spec.vehicle.available_cameras.extend(
            [self.available_cameras[c] for c in session.camera_names if c in self.available_cameras])
        self.log.write(driver_session_request=req)
        self._call("start_session", req)

    def plan(self, observation, t_now_us: int, t_query_us: int) -> Plan:
        if self._session is None:
            raise RuntimeError("RemotePolicy.plan() before start()")
        sid = self._session.session_uuid
        futures = []
        for cam, frame in observation.cameras.items():
            img = frame.image
            data = getattr(img, "encoded", b"")
            if not data or getattr(img, "image_format", None) != self.image_format:
                data = convert.encode_image(np.asarray(img), self.image_format)
            req = egodriver_pb2.RolloutCameraImage(session_uuid=sid, camera_image=egodriver_pb2.RolloutCameraImage.CameraImage(
                frame_start_us=convert.to_wire_t(frame.t_start_us), frame_end_us=convert.to_wire_t(frame.t_end_us),
                image_bytes=data, logical_id=cam))
            self.log.write(driver_camera_image=req)
            futures.append(("submit_image_observation", self.stub.submit_image_observation.future(req, timeout=self.timeout_s)))
        hist = observation.ego_history
        traj, dyn = convert.ego_history_to_proto(hist, self._last_ego_t)
        if len(traj.poses):
            req = egodriver_pb2.RolloutEgoTrajectory(session_uuid=sid, trajectory=traj, dynamic_states=dyn)
            self.log.write(driver_ego_trajectory=req)
            self._call("submit_egomotion_observation", req)  # blocking calls are cheaper than futures here
            self._last_ego_t = int(hist.t_us[-1])
        route = egodriver_pb2.RouteRequest(session_uuid=sid, route=convert.route_to_proto(convert.to_wire_t(t_now_us),
                                                                                observation.route_rig))
        self.log.write(route_request=route)
        self._call("submit_route", route)
        for method, f in futures:  # barrier: every image submitted before drive
            _result("driver", self.addr, method, f, self.timeout_s)
        req = egodriver_pb2.DriveRequest(session_uuid=sid, time_now_us=convert.to_wire_t(t_now_us),
                                         time_query_us=convert.to_wire_t(t_query_us))
        self.log.write(driver_request=req)
        resp = self._call("drive", req)
        self.log.write(driver_return=resp)
        T_local_rig = Pose(hist.xyz_local[-1], hist.quat_local[-1])
        return _plan_from_response(resp, int(t_now_us), T_local_rig)

    def close(self) -> None:
        if self._session is not None:
            sid, self._session = self._session.session_uuid, None
            self._call("close_session", egodriver_pb2.DriveSessionCloseRequest(session_uuid=sid))


# ----------------------------------------------------------------------------------------------
# Controller, physics, traffic
# ----------------------------------------------------------------------------------------------
class RemoteController:
    """``track`` / ``force_gt`` of :class:`~cordillera.sim.runtime.SimEndpoints` over ``VDCService``."""

    def __init__(self, channels: Channels, log: AslLog = _NO_LOG, pose_reporting_interval_us: int | None = None,
                 timeout_s: float = RPC_TIMEOUT_S):
        self.stub, self.addr = channels.stubs["controller"], channels.address("controller")
        self.log, self.interval_us, self.timeout_s = log, pose_reporting_interval_us, timeout_s
        self.session_uuid: str | None = None

    def _call(self, method: str, request):
        return _rpc("controller", self.addr, method, getattr(self.stub, method), request, self.timeout_s)

    def start(self, session_uuid: str) -> None:
        self.session_uuid = session_uuid
        self._call("start_session", controller_pb2.VDCSessionRequest(session_uuid=session_uuid))

    def close(self) -> None:
        if self.session_uuid is not None:
            sid, self.session_uuid = self.session_uuid, None
            self._call("close_session", controller_pb2.VDCSessionCloseRequest(session_uuid=sid))

    def _run(self, ego, t_rig, xyz_rig, yaw_rig, t_us: int, t_next_us: int, coerce: bool):
        req = controller_pb2.RunControllerAndVehicleModelRequest(
            session_uuid=self.session_uuid,
            state=convert.state_at_time_to_proto(convert.to_wire_t(t_us), convert.ego_pose(ego), convert.agent_dynamic12(ego)),
            planned_trajectory_in_rig=convert.rig_trajectory_to_proto(t_rig, xyz_rig, yaw_rig),
            future_time_us=convert.t_us_to_proto_i64(convert.to_wire_t(t_next_us)), coerce_dynamic_state=coerce,
            pose_reporting_interval_us=convert.t_us_to_proto_i64(self.interval_us or (t_next_us - t_us)))
        self.log.write(controller_request=req)
        resp = self._call("run_controller_and_vehicle", req)
        self.log.write(controller_return=resp)
        if not resp.states or convert.from_wire_t(resp.states[-1].timestamp_us) != t_next_us:
            raise ServiceError(f"controller service at {self.addr}: the last state must be at future_time_us={t_next_us}")
        return resp.states[-1]

    def track(self, ego, plan: Plan, t_us: int, t_next_us: int):
        last = self._run(ego, plan.t_us, plan.xyz_rig, plan.yaw_rig, t_us, t_next_us, coerce=False)
        pose = convert.pose_from_proto(last.pose_local_to_rig)
        s12 = convert.dynamic_state_from_proto(last.dynamic_state)
        return convert.agent_state_from_pose_dynamic(pose, s12, convert.kinematic_steering(float(s12[0]), float(s12[5])))

    def force_gt(self, ego, ego_gt_next, t_us: int, t_next_us: int) -> None:
        """AlpaSim still runs the controller during force-GT (reference = GT, coerced state) and
        replaces its answer by the GT pose; we do the same with the GT step as reference."""
        T = convert.ego_pose(ego).inverse() @ convert.ego_pose(ego_gt_next)
        xyz = np.array([[0.0, 0.0, 0.0], T.translation])
        if np.linalg.norm(T.translation[:2]) < 1e-6:  # standing still: a 2-pose reference all the same
            xyz[1, 0] = 0.0
        self._run(ego, [t_us, t_next_us], xyz, [0.0, T.yaw_rad], t_us, t_next_us, coerce=True)


class RemotePhysics:
    """``ground`` of :class:`SimEndpoints` over ``PhysicsService`` (ego box at ``t + dt``). Our world
    is planar, so x, y and yaw are kept (AlpaSim's physics never moves x, y either); a status other
    than ``SUCCESSFUL_UPDATE`` is logged in the .asl and otherwise ignored, as AlpaSim does."""

    def __init__(self, channels: Channels, scenario, log: AslLog = _NO_LOG, timeout_s: float = RPC_TIMEOUT_S):
        self.stub, self.addr = channels.stubs["physics"], channels.address("physics")
        self.scenario, self.log, self.timeout_s = scenario, log, timeout_s

    def ground(self, ego_next, t_us: int, t_next_us: int):
        e = self.scenario.ego
        box = convert.ego_box_pose(ego_next, e.rear_axle_to_center_m, e.height_m)
        req = physics_pb2.PhysicsGroundIntersectionRequest(
            scene_id=self.scenario.id, now_us=convert.to_wire_t(t_us), future_us=convert.to_wire_t(t_next_us),
            ego_data=physics_pb2.PhysicsGroundIntersectionRequest.EgoData(
                aabb=convert.aabb_to_proto([e.length_m, e.width_m, e.height_m]),
                ego_trajectory_aabb=convert.scene_trajectory_to_proto([t_next_us], [box])))
        self.log.write(physics_request=req)
        resp = _rpc("physics", self.addr, "ground_intersection", self.stub.ground_intersection, req, self.timeout_s)
        self.log.write(physics_return=resp)
        if len(resp.ego_trajectory_aabb.poses) != 1:
            raise ServiceError(f"physics service at {self.addr} returned {len(resp.ego_trajectory_aabb.poses)} ego poses "
                               "for 1 requested")
        return ego_next


class RemoteTraffic:
    """``step`` of :class:`SimEndpoints` over ``TrafficService``. The EGO update carries the box
    pose at ``t + dt`` and a constant-velocity forecast ``FORECAST_US`` later; actor states come
    back as poses, their speed from the server's forecast pose (``visible`` = present)."""

    def __init__(self, channels: Channels, scenario, log: AslLog = _NO_LOG, timeout_s: float = RPC_TIMEOUT_S):
        self.stub, self.addr = channels.stubs["traffic"], channels.address("traffic")
        self.scenario, self.log, self.timeout_s = scenario, log, timeout_s
        self.session_uuid: str | None = None
        self._states: dict = {}

    def _call(self, method: str, request):
        return _rpc("traffic", self.addr, method, getattr(self.stub, method), request, self.timeout_s)

    def start(self, session_uuid: str, seed: int, initial_states: dict, reference=None, handover_us: int = 0) -> None:
        sc, e = self.scenario, self.scenario.ego
        self.session_uuid, self._states = session_uuid, dict(initial_states)
        size = convert.aabb_to_proto([e.length_m, e.width_m, e.height_m])
        if reference is not None and reference.steps:
            ego_t = [s.t_us for s in reference.steps]
            ego_p = [convert.ego_box_pose(s.ego, e.rear_axle_to_center_m, e.height_m) for s in reference.steps]
        else:
            from cordillera.world.scenario import AgentState

            ego_t = [0]
            ego_p = [convert.ego_box_pose(AgentState(e.x_m, e.y_m, e.yaw_rad), e.rear_axle_to_center_m, e.height_m)]
        objs = [traffic_pb2.ObjectTrajectory(aabb=size, trajectory=convert.scene_trajectory_to_proto(ego_t, ego_p),
                                             object_id="EGO", is_static=False, label_class="automobile")]
        for a in sc.actors:
            zc = 0.5 * a.height_m
            if reference is not None and reference.steps:
                rows = [(s.t_us, s.actors[a.id]) for s in reference.steps if a.id in s.actors and s.actors[a.id].visible]
            else:
                st = initial_states.get(a.id)
                rows = [(0, st)] if st is not None and st.visible else []
            if not rows:
                continue
            objs.append(traffic_pb2.ObjectTrajectory(
                aabb=convert.aabb_to_proto([a.length_m, a.width_m, a.height_m]),
                trajectory=convert.scene_trajectory_to_proto([t for t, _ in rows], [convert.box_pose(s, zc) for _, s in rows]),
                object_id=a.id, is_static=a.is_static, label_class=a.label))
        req = traffic_pb2.TrafficSessionRequest(session_uuid=session_uuid, scene_id=sc.id, random_seed=int(seed) % 2**64,
                                                logged_object_trajectories=objs,
                                                handover_time_us=convert.to_wire_t(handover_us))
        self.log.write(traffic_session_request=req)
        self._call("start_session", req)

    def close(self) -> None:
        if self.session_uuid is not None:
            sid, self.session_uuid = self.session_uuid, None
            self._call("close_session", traffic_pb2.TrafficSessionCloseRequest(session_uuid=sid))

    def step(self, ego_next, t_us: int, dt_us: int) -> dict:
        e = self.scenario.ego
        tq = int(t_us + dt_us)
        f = FORECAST_US * 1e-6
        fc = replace(ego_next, x_m=ego_next.x_m + ego_next.speed_mps * f * math.cos(ego_next.yaw_rad),
                     y_m=ego_next.y_m + ego_next.speed_mps * f * math.sin(ego_next.yaw_rad))
        poses = [convert.ego_box_pose(s, e.rear_axle_to_center_m, e.height_m) for s in (ego_next, fc)]
        req = traffic_pb2.TrafficRequest(session_uuid=self.session_uuid, time_query_us=convert.to_wire_t(tq),
                                         object_trajectory_updates=[traffic_pb2.ObjectTrajectoryUpdate(
                                             object_id="EGO",
                                             trajectory=convert.scene_trajectory_to_proto([tq, tq + FORECAST_US], poses))])
        self.log.write(traffic_request=req)
        resp = self._call("simulate", req)
        self.log.write(traffic_return=resp)
        got = {}
        for u in resp.object_trajectory_updates:
            t, ps = convert.scene_trajectory_from_proto(u.trajectory)
            at = np.flatnonzero(t == tq)
            if len(at) != 1:
                raise ServiceError(f"traffic service at {self.addr}: object {u.object_id} has no pose at "
                                   f"time_query_us={tq}")
            i = int(at[0])
            p = ps[i]
            speed = 0.0
            if i + 1 < len(t):
                speed = float(np.linalg.norm(ps[i + 1].translation[:2] - p.translation[:2])) / ((int(t[i + 1]) - tq) * 1e-6)
            got[u.object_id] = (p, speed)
        out = {}
        for aid, prev in self._states.items():
            if aid in got:
                p, speed = got[aid]
                out[aid] = replace(prev, x_m=float(p.translation[0]), y_m=float(p.translation[1]), yaw_rad=p.yaw_rad,
                                   speed_mps=speed, visible=True)
            else:
                out[aid] = replace(prev, speed_mps=0.0, accel_mps2=0.0, yaw_rate_radps=0.0, visible=False)
        self._states = out
        return out


# ----------------------------------------------------------------------------------------------
# Session hook and one rollout
# ----------------------------------------------------------------------------------------------
def _actor_poses(sim) -> logging_pb2.ActorPoses:
    """Visible actors, then EGO last (AlpaSim's runtime order, spec/alpasim.md §10.11)."""
    sc, e, ws = sim.scenario, sim.scenario.ego, sim.world_state
    msg = logging_pb2.ActorPoses(timestamp_us=convert.to_wire_t(ws.t_us))
    for a in sc.actors:
        st = ws.actors.get(a.id)
        if st is not None and st.visible:
            msg.actor_poses.add(actor_id=a.id, actor_pose=convert.pose_to_proto(convert.box_pose(st, 0.5 * a.height_m)))
    msg.actor_poses.add(actor_id="EGO", actor_pose=convert.pose_to_proto(
        convert.ego_box_pose(ws.ego, e.rear_axle_to_center_m, e.height_m)))
    return msg


class GrpcSession:
    """The lifecycle hook of one remote rollout (``SimEndpoints.hooks``): writes ``RolloutMetadata``
    and the renderer probe, opens the controller session before the driver's and the traffic
    session after it (AlpaSim's setup order), logs ``ActorPoses`` at start and after every commit,
    and closes the sessions at the end (best effort after a failure)."""

    def __init__(self, log: AslLog, versions: dict, renderer: RemoteRenderer | None = None,
                 controller: RemoteController | None = None, traffic: RemoteTraffic | None = None):
        self.log, self.versions = log, versions
        self.renderer, self.controller, self.traffic = renderer, controller, traffic

    def before_start(self, sim) -> None:
        sc, e, cfg = sim.scenario, sim.scenario.ego, sim.config
        v = self.versions
        meta = logging_pb2.RolloutMetadata(
            session_metadata=logging_pb2.RolloutMetadata.SessionMetadata(
                session_uuid=sim.rollout_id, scene_id=sc.id, batch_size=1, n_sim_steps=sim.end_us // cfg.control_period_us,
                start_timestamp_us=convert.to_wire_t(-(cfg.history_poses - 1) * cfg.control_period_us),
                control_timestep_us=cfg.control_period_us, render_start_timestamp_us=convert.to_wire_t(0)),
            force_gt_duration=sim.force_gt_end_us,
            version_ids=logging_pb2.RolloutMetadata.VersionIds(
                runtime_version=version_id(), egodriver_version=v.get("driver"), sensorsim_version=v.get("sensorsim"),
                physics_version=v.get("physics"), traffic_version=v.get("traffic"), controller_version=v.get("controller")),
            transform_ego_coords_rig_to_aabb=convert.pose_to_proto(Pose([e.rear_axle_to_center_m, 0.0, 0.5 * e.height_m])))
        meta.actor_definitions.actor_aabb.add(actor_id="EGO", aabb=convert.aabb_to_proto([e.length_m, e.width_m, e.height_m]),
                                              actor_label="automobile")
        for a in sc.actors:
            meta.actor_definitions.actor_aabb.add(actor_id=a.id, aabb=convert.aabb_to_proto([a.length_m, a.width_m, a.height_m]),
                                                  actor_label=a.label)
        if sim.reference is not None and sim.reference.steps:
            meta.ego_rig_recorded_ground_truth_trajectory.CopyFrom(convert.scene_trajectory_to_proto(
                [s.t_us for s in sim.reference.steps], [convert.ego_pose(s.ego) for s in sim.reference.steps]))
        self.log.write(rollout_metadata=meta)
        if self.renderer is not None:
            self.log.write(available_cameras_request=self.renderer.available_request)
            self.log.write(available_cameras_return=self.renderer.available)
            self.log.write(available_ego_masks_request=common_pb2.Empty())
            self.log.write(available_ego_masks_return=self.renderer.ego_masks)
        if self.controller is not None:
            self.controller.start(sim.rollout_id)

    def after_start(self, sim) -> None:
        if self.traffic is not None:
            self.traffic.start(sim.rollout_id, sim.seed, sim.world_state.actors, sim.reference,
                               sim.force_gt_end_us + sim.config.control_period_us)
        if self.log.enabled:
            self.log.write(actor_poses=_actor_poses(sim))

    def after_commit(self, sim) -> None:
        if self.log.enabled:
            self.log.write(actor_poses=_actor_poses(sim))

    def on_close(self, sim, rollout) -> None:
        errors = []
        for ep in (self.controller, self.traffic):
            if ep is not None:
                try:
                    ep.close()
                except ServiceError as e:
                    errors.append(str(e))
        self.log.close()
        if errors and not rollout.failed:
            raise ServiceError("; ".join(errors))


def run_rollout_grpc(scenario, addresses: ServiceAddresses, config=None, policy_name: str = "grpc",
                     rollout_id: str | None = None, seed: int = 0, reference=None, asl_path: str | Path | None = None,
                     image_format: int = sensorsim_pb2.JPEG, timeout_s: float = RPC_TIMEOUT_S, hooks: tuple = ()):
    """One rollout of ``scenario`` with the services at ``addresses`` (None roles run in-process).

    Same loop, order and failure handling as :func:`cordillera.sim.runtime.run_rollout`; writes
    ``asl_path`` when given; ``hooks`` are extra ``SimEndpoints`` hooks (after ours). Never raises
    for service failures: they fail the rollout with a message naming the service (a probe failure
    before the loop is reported the same way)."""
    from cordillera.sim.runtime import SimConfig, SimEndpoints, Simulator
    from cordillera.sim.types import Rollout

    config = config or SimConfig()
    chans = Channels(addresses)
    log = AslLog(asl_path)
    try:
        try:
            versions = chans.versions(min(timeout_s, READY_TIMEOUT_S))
            chans.check_scene(scenario.id, min(timeout_s, READY_TIMEOUT_S))
            renderer = (RemoteRenderer(chans, scenario, config.cameras, image_format, log=log, timeout_s=timeout_s,
                                       decode=config.keep_images) if addresses.sensorsim else None)
        except ServiceError as e:
            log.close()
            return Rollout(scenario.id, rollout_id or "", policy_name, seed, status="failed", error=str(e))
        controller = RemoteController(chans, log, timeout_s=timeout_s) if addresses.controller else None
        physics = RemotePhysics(chans, scenario, log, timeout_s) if addresses.physics else None
        traffic = RemoteTraffic(chans, scenario, log, timeout_s) if addresses.traffic else None
        policy = RemotePolicy(chans, policy_name, renderer.available.available_cameras if renderer else (), log,
                              image_format, timeout_s)
        hook = GrpcSession(log, versions, renderer, controller, traffic)
        sim = Simulator(scenario, policy, config, renderer, rollout_id, seed, reference,
                        SimEndpoints(controller=controller, physics=physics, traffic=traffic, hooks=(hook, *hooks)))
        return sim.run()
    finally:
        log.close()
        chans.close()


# ----------------------------------------------------------------------------------------------
# run_batch plumbing
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemotePolicyFactory:
    """What ``run_batch`` calls for each rollout: a marker naming the remote policy. The actual
    :class:`RemotePolicy` is built by :class:`GrpcRunFn` with the rollout's channels."""

    name: str

    def __call__(self) -> "RemotePolicyFactory":
        return self


@dataclass(eq=False)
class GrpcRunFn:
    """``run_fn`` for :func:`cordillera.sim.batch.run_batch`: rollouts of a
    :class:`RemotePolicyFactory` go over gRPC (``rollout.asl`` beside the rollout's outputs), any
    other policy (the expert reference) runs in-process. ``addresses`` may be a callable returning
    the current :class:`ServiceAddresses` (the launcher restarts crashed services)."""

    addresses: object
    out_dir: str | Path
    image_format: int = sensorsim_pb2.JPEG
    timeout_s: float = RPC_TIMEOUT_S
    hooks: tuple = ()

    def __call__(self, scenario, policy, config, renderer, rollout_id, seed, reference):
        from cordillera.metrics.aggregate import rollout_dir
        from cordillera.sim.runtime import run_rollout

        if not isinstance(policy, RemotePolicyFactory):
            return run_rollout(scenario, policy, config, renderer, rollout_id=rollout_id, seed=seed, reference=reference)
        addresses = self.addresses() if callable(self.addresses) else self.addresses
        asl = rollout_dir(self.out_dir, scenario.id, rollout_id) / "rollout.asl"
        return run_rollout_grpc(scenario, addresses, config, policy.name, rollout_id, seed, reference, asl,
                                self.image_format, self.timeout_s, self.hooks)
