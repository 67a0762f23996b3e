"""Servicers driven by hand-written AlpaSim-style client sequences (raw protos, no cordillera client).

Servers run in this process on free loopback ports (``make_server(..., port=0)``)."""

import math
import threading

import cv2
import grpc
import numpy as np
import pytest

from cordillera.geometry.pose import Pose
from cordillera.serve import convert
from cordillera.serve.launcher import make_server
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
)

T0 = 1_689_697_803_493_732  # an AlpaSim-style absolute epoch time base (µs)
DT = 100_000
TIMEOUT = 20


@pytest.fixture(scope="module")
def servers():
    out = {}
    for svc in ("driver", "controller", "physics", "traffic"):
        server, port, _ = make_server(svc, 0, "expert")
        out[svc] = (server, grpc.insecure_channel(f"127.0.0.1:{port}"))
    yield out
    for server, ch in out.values():
        ch.close()
        server.stop(grace=None)


@pytest.fixture
def driver(servers):
    return egodriver_pb2_grpc.EgodriverServiceStub(servers["driver"][1])


def _jpeg(h=64, w=96, value=120) -> bytes:
    img = np.full((h, w, 3), value, np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def _pose(x, y, yaw, z=0.0) -> common_pb2.Pose:
    return common_pb2.Pose(vec=common_pb2.Vec3(x=x, y=y, z=z),
                           quat=common_pb2.Quat(w=math.cos(yaw / 2), x=0.0, y=0.0, z=math.sin(yaw / 2)))


def _egomotion(sid, x0, y0, yaw, speed, n, t_end):
    """n poses at 10 Hz ending at t_end, driving straight along yaw at speed."""
    traj, dyn = common_pb2.Trajectory(), []
    for k in range(n):
        t = t_end - (n - 1 - k) * DT
        d = speed * (t - t_end) * 1e-6
        traj.poses.add(pose=_pose(x0 + d * math.cos(yaw), y0 + d * math.sin(yaw), yaw), timestamp_us=t)
        dyn.append(common_pb2.DynamicState(linear_velocity=common_pb2.Vec3(x=speed)))
    return egodriver_pb2.RolloutEgoTrajectory(session_uuid=sid, trajectory=traj, dynamic_states=dyn)


def _route(sid, t, n_valid=12, spacing=80 / 19, lateral=0.0):
    wp = [common_pb2.Vec3(x=k * spacing, y=lateral * k, z=0.0) for k in range(n_valid)]
    wp += [common_pb2.Vec3(x=float("nan"), y=float("nan"), z=float("nan"))] * (20 - n_valid)
    return egodriver_pb2.RouteRequest(session_uuid=sid, route=egodriver_pb2.Route(waypoints=wp, timestamp_us=t))


def _start(driver, sid, cams=("camera_front_wide_120fov",)):
    req = egodriver_pb2.DriveSessionRequest(session_uuid=sid, random_seed=7)
    req.debug_info.scene_id = "not-a-cordillera-scene"
    for c in cams:
        req.rollout_spec.vehicle.available_cameras.add(logical_id=c)
    driver.start_session(req, timeout=TIMEOUT)


def _alpasim_step(driver, sid, x0, y0, yaw, speed, t, first):
    """One policy step as AlpaSim's runtime makes it: image(s), egomotion, route, barrier, drive."""
    img = egodriver_pb2.RolloutCameraImage(session_uuid=sid, camera_image=egodriver_pb2.RolloutCameraImage.CameraImage(
        frame_start_us=t - 30_000, frame_end_us=t, image_bytes=_jpeg(), logical_id="camera_front_wide_120fov"))
    futs = [driver.submit_image_observation.future(img, timeout=TIMEOUT),
            driver.submit_egomotion_observation.future(
                _egomotion(sid, x0, y0, yaw, speed, 16 if first else 1, t), timeout=TIMEOUT),
            driver.submit_route.future(_route(sid, t), timeout=TIMEOUT)]
    for f in futs:
        f.result()
    return driver.drive(egodriver_pb2.DriveRequest(session_uuid=sid, time_now_us=t, time_query_us=t + DT), timeout=TIMEOUT)


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------
def test_driver_alpasim_sequence_pose0_is_last_egomotion_and_covers_2s(driver):
    sid = "session-a"
    x0, y0, yaw, v = 1234.5, -567.25, 0.7, 8.0
    _start(driver, sid)
    resp = _alpasim_step(driver, sid, x0, y0, yaw, v, T0, first=True)
    poses = resp.trajectory.poses
    last = _egomotion(sid, x0, y0, yaw, v, 16, T0).trajectory.poses[-1]
    assert poses[0].timestamp_us == T0 == last.timestamp_us
    assert poses[0].pose == last.pose  # bit for bit the wire pose
    assert (poses[-1].timestamp_us - T0) >= 2_000_000
    ts = [p.timestamp_us for p in poses]
    assert all(b - a == DT for a, b in zip(ts, ts[1:]))
    # unprivileged expert = route following at the current speed: after 2 s, 16 m ahead along yaw
    t, xyz, q = convert.trajectory_from_proto(resp.trajectory)
    k = int(np.flatnonzero(t == T0 + 2_000_000)[0])
    d = xyz[k, :2] - np.array([x0, y0])
    assert np.hypot(*d) == pytest.approx(16.0, abs=0.05)
    assert math.atan2(d[1], d[0]) == pytest.approx(yaw, abs=1e-3)
    assert resp.debug_info.unstructured_debug_info.startswith(b"{")
    # a second step continues the session
    resp2 = _alpasim_step(driver, sid, x0 + 0.8 * math.cos(yaw), y0 + 0.8 * math.sin(yaw), yaw, v, T0 + DT, first=False)
    assert resp2.trajectory.poses[0].timestamp_us == T0 + DT
    driver.close_session(egodriver_pb2.DriveSessionCloseRequest(session_uuid=sid), timeout=TIMEOUT)


def test_driver_four_concurrent_sessions_do_not_mix(driver):
    starts = {f"conc-{i}": (100.0 * i, -50.0 * i, 0.4 * i - 0.6, 5.0 + i) for i in range(4)}
    results, errors = {}, []

    def run(sid):
        try:
            x0, y0, yaw, v = starts[sid]
            _start(driver, sid)
            out = []
            for k in range(5):
                d = v * k * DT * 1e-6
                out.append(_alpasim_step(driver, sid, x0 + d * math.cos(yaw), y0 + d * math.sin(yaw), yaw, v,
                                         T0 + k * DT, first=(k == 0)))
            results[sid] = out
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(sid,)) for sid in starts]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors and len(results) == 4
    for sid, out in results.items():
        x0, y0, yaw, v = starts[sid]
        for k, resp in enumerate(out):
            p0 = resp.trajectory.poses[0]
            d = v * k * DT * 1e-6
            assert p0.timestamp_us == T0 + k * DT
            assert p0.pose.vec.x == pytest.approx(x0 + d * math.cos(yaw), abs=1e-3)
            assert p0.pose.vec.y == pytest.approx(y0 + d * math.sin(yaw), abs=1e-3)
            t, xyz, _ = convert.trajectory_from_proto(resp.trajectory)
            dist = np.hypot(*(xyz[20, :2] - xyz[0, :2]))
            assert dist == pytest.approx(2.0 * v, abs=0.05)  # each session plans at its own speed


def _code(fn, *a, **kw):
    with pytest.raises(grpc.RpcError) as e:
        fn(*a, timeout=TIMEOUT, **kw)
    return e.value.code(), e.value.details()


def test_driver_malformed_requests_get_status_codes_and_server_keeps_serving(driver):
    sid = "robust"
    _start(driver, sid)
    # unknown session
    code, msg = _code(driver.drive, egodriver_pb2.DriveRequest(session_uuid="nope", time_now_us=T0, time_query_us=T0 + DT))
    assert code == grpc.StatusCode.NOT_FOUND and "nope" in msg
    assert _code(driver.submit_route, _route("nope", T0))[0] == grpc.StatusCode.NOT_FOUND
    # missing session id
    assert _code(driver.drive, egodriver_pb2.DriveRequest(time_now_us=T0, time_query_us=T0 + DT))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    # NaN poses
    bad = _egomotion(sid, 0.0, 0.0, 0.0, 5.0, 3, T0)
    bad.trajectory.poses[1].pose.vec.x = float("nan")
    code, msg = _code(driver.submit_egomotion_observation, bad)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "finite" in msg
    # poses without dynamic states
    nodyn = _egomotion(sid, 0.0, 0.0, 0.0, 5.0, 3, T0)
    del nodyn.dynamic_states[:]
    assert _code(driver.submit_egomotion_observation, nodyn)[0] == grpc.StatusCode.INVALID_ARGUMENT
    # empty and undecodable images
    for data, word in ((b"", "empty"), (b"\xff\xd8 definitely not a jpeg", "decode")):
        req = egodriver_pb2.RolloutCameraImage(session_uuid=sid, camera_image=egodriver_pb2.RolloutCameraImage.CameraImage(
            frame_start_us=T0 - 30_000, frame_end_us=T0, image_bytes=data, logical_id="camera_front_wide_120fov"))
        code, msg = _code(driver.submit_image_observation, req)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and word in msg
    # missing camera image / query before now
    assert _code(driver.submit_image_observation, egodriver_pb2.RolloutCameraImage(session_uuid=sid))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert _code(driver.drive, egodriver_pb2.DriveRequest(session_uuid=sid, time_now_us=T0, time_query_us=T0))[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    # ... and the very same session still drives
    resp = _alpasim_step(driver, sid, 10.0, 20.0, 0.0, 5.0, T0, first=True)
    assert len(resp.trajectory.poses) >= 21
    assert driver.get_version(common_pb2.Empty(), timeout=TIMEOUT).grpc_api_version.minor == 54


def test_driver_without_egomotion_answers_an_empty_warm_up_trajectory(driver):
    _start(driver, "empty")
    resp = driver.drive(egodriver_pb2.DriveRequest(session_uuid="empty", time_now_us=T0, time_query_us=T0 + DT),
                        timeout=TIMEOUT)
    assert len(resp.trajectory.poses) == 0 and b'"warming_up": true' in resp.debug_info.unstructured_debug_info


# ----------------------------------------------------------------------------------------------
# controller, physics, traffic
# ----------------------------------------------------------------------------------------------
def test_controller_chains_timestamps_reports_intervals_and_tracks(servers):
    from cordillera.sim.controller import ControllerState, plan_to_local, track
    from cordillera.world.scenario import AgentState

    vdc = controller_pb2_grpc.VDCServiceStub(servers["controller"][1])
    vdc.start_session(controller_pb2.VDCSessionRequest(session_uuid="c1"), timeout=TIMEOUT)
    ego = AgentState(x_m=5.0, y_m=-3.0, yaw_rad=0.3, speed_mps=10.0)
    req = controller_pb2.RunControllerAndVehicleModelRequest(
        session_uuid="c1", state=convert.state_at_time_to_proto(convert.to_wire_t(0), convert.ego_pose(ego),
                                                                convert.agent_dynamic12(ego)),
        future_time_us=convert.to_wire_t(DT), pose_reporting_interval_us=25_000)
    req.planned_trajectory_in_rig.CopyFrom(convert.rig_trajectory_to_proto(DT * np.arange(30),
                                                                           [[k, 0, 0] for k in range(30)], np.zeros(30)))
    resp = vdc.run_controller_and_vehicle(req, timeout=TIMEOUT)
    assert [convert.from_wire_t(s.timestamp_us) for s in resp.states] == [25_000, 50_000, 75_000, 100_000]
    # same numbers as the in-process controller (the session keeps full precision)
    tr = plan_to_local(DT * np.arange(30), np.array([[k, 0, 0] for k in range(30)], float), np.zeros(30), ego)
    ref, _ = track(ego, tr, ControllerState(), 0, DT, 10_000)
    last = convert.pose_from_proto(resp.states[-1].pose_local_to_rig)
    assert last.translation[0] == pytest.approx(ref.x_m, abs=1e-4)
    assert last.translation[1] == pytest.approx(ref.y_m, abs=1e-4)
    # a state that does not continue the chain
    req.state.timestamp_us = convert.to_wire_t(50_000)
    req.future_time_us = convert.to_wire_t(200_000)
    code, msg = _code(vdc.run_controller_and_vehicle, req)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "continue" in msg
    # empty plan, unknown session
    req.state.timestamp_us = convert.to_wire_t(DT)
    req.planned_trajectory_in_rig.Clear()
    assert _code(vdc.run_controller_and_vehicle, req)[0] == grpc.StatusCode.INVALID_ARGUMENT
    req.session_uuid = "unknown"
    assert _code(vdc.run_controller_and_vehicle, req)[0] == grpc.StatusCode.NOT_FOUND


def test_physics_returns_poses_unchanged_in_request_order(servers):
    ph = physics_pb2_grpc.PhysicsServiceStub(servers["physics"][1])
    poses = [Pose.from_xy_yaw(float(i), 2.0 * i, 0.1 * i, 0.75) for i in range(5)]
    req = physics_pb2.PhysicsGroundIntersectionRequest(scene_id="x", now_us=T0, future_us=T0 + DT)
    for p in poses:
        req.other_objects.add(aabb=common_pb2.AABB(size_x=4, size_y=2, size_z=1.5),
                              pose_pair=physics_pb2.PhysicsGroundIntersectionRequest.PosePair(
                                  now_pose=convert.pose_to_proto(p), future_pose=convert.pose_to_proto(p)))
    req.ego_data.aabb.CopyFrom(common_pb2.AABB(size_x=5.4, size_y=2.1, size_z=1.5))
    req.ego_data.ego_trajectory_aabb.CopyFrom(convert.trajectory_poses_to_proto([T0 + DT], [poses[2]]))
    resp = ph.ground_intersection(req, timeout=TIMEOUT)
    assert [r.pose for r in resp.other_poses] == [o.pose_pair.future_pose for o in req.other_objects]
    assert all(r.status == physics_pb2.PhysicsGroundIntersectionReturn.Status.SUCCESSFUL_UPDATE for r in resp.other_poses)
    assert resp.ego_trajectory_aabb == req.ego_data.ego_trajectory_aabb and len(resp.ego_status) == 1
    req.other_objects[1].pose_pair.future_pose.quat.Clear()  # zero quaternion
    assert _code(ph.ground_intersection, req)[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_traffic_returns_a_pose_at_time_query_per_object_and_moves_them(servers):
    from cordillera.world import generator

    tr = traffic_pb2_grpc.TrafficServiceStub(servers["traffic"][1])
    sc = generator.make("car_following", 1000)
    e = sc.ego
    tr.start_session(traffic_pb2.TrafficSessionRequest(session_uuid="t1", scene_id=sc.id), timeout=TIMEOUT)
    from cordillera.world.scenario import AgentState

    prev = None
    for k in range(1, 4):
        tq = k * DT
        ego = AgentState(x_m=e.x_m + e.speed_mps * tq * 1e-6 * math.cos(e.yaw_rad),
                         y_m=e.y_m + e.speed_mps * tq * 1e-6 * math.sin(e.yaw_rad), yaw_rad=e.yaw_rad)
        box = convert.ego_box_pose(ego, e.rear_axle_to_center_m, e.height_m)
        req = traffic_pb2.TrafficRequest(session_uuid="t1", time_query_us=convert.to_wire_t(tq), object_trajectory_updates=[
            traffic_pb2.ObjectTrajectoryUpdate(object_id="EGO", trajectory=convert.scene_trajectory_to_proto([tq], [box]))])
        resp = tr.simulate(req, timeout=TIMEOUT)
        ids = [u.object_id for u in resp.object_trajectory_updates]
        assert set(ids) <= {a.id for a in sc.actors} and len(ids) == len(set(ids)) > 0
        for u in resp.object_trajectory_updates:
            assert convert.to_wire_t(tq) in [p.timestamp_us for p in u.trajectory.poses]
        now = {u.object_id: u.trajectory.poses[0].pose.vec for u in resp.object_trajectory_updates}
        if prev is not None:
            moved = [aid for aid in now if aid in prev and abs(now[aid].x - prev[aid].x) + abs(now[aid].y - prev[aid].y) > 1e-3]
            assert moved  # IDM traffic drives
        prev = now
    code, _ = _code(tr.simulate, req)  # the same time again does not continue the session
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert _code(tr.start_session, traffic_pb2.TrafficSessionRequest(session_uuid="t2", scene_id="no_such_family-1"))[0] \
        == grpc.StatusCode.NOT_FOUND


def test_every_service_reports_the_alpasim_api_version(servers):
    for name, stub_cls in (("driver", egodriver_pb2_grpc.EgodriverServiceStub),
                           ("controller", controller_pb2_grpc.VDCServiceStub),
                           ("physics", physics_pb2_grpc.PhysicsServiceStub)):
        v = stub_cls(servers[name][1]).get_version(common_pb2.Empty(), timeout=TIMEOUT)
        assert (v.grpc_api_version.major, v.grpc_api_version.minor, v.grpc_api_version.patch) == (0, 54, 0)
    md = traffic_pb2_grpc.TrafficServiceStub(servers["traffic"][1]).get_metadata(common_pb2.Empty(), timeout=TIMEOUT)
    assert md.version_id.grpc_api_version.minor == 54


# ----------------------------------------------------------------------------------------------
# sensorsim
# ----------------------------------------------------------------------------------------------
def test_sensorsim_batch_render_one_item_per_camera_matches_in_process_render():
    from cordillera.render import make_renderer
    from cordillera.render.rig import default_rig
    from cordillera.render.video import decode_image
    from cordillera.sim.traffic import init_traffic, signal_states
    from cordillera.world import generator
    from cordillera.world.scenario import AgentState, WorldState

    from concurrent import futures

    from cordillera.serve.servicers import SensorsimService

    # OpenCV backend: a GL context belongs to the thread that made it (the server renders on its own)
    svc = SensorsimService(backend="cv")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    sensorsim_pb2_grpc.add_SensorsimServiceServicer_to_server(svc, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        ss = sensorsim_pb2_grpc.SensorsimServiceStub(ch)
        sc = generator.make("car_following", 1000)
        cams = ss.get_available_cameras(sensorsim_pb2.AvailableCamerasRequest(scene_id=sc.id), timeout=60)
        by_name = {c.logical_id: c for c in cams.available_cameras}
        assert len(by_name) == 7 and by_name["camera_front_wide_120fov"].intrinsics.WhichOneof("camera_param") == "ftheta_param"
        assert ss.get_available_ego_masks(common_pb2.Empty(), timeout=10).ego_mask_metadata == []
        assert list(ss.get_available_scenes(common_pb2.Empty(), timeout=10).scene_ids) == ["*"]
        ego = AgentState(sc.ego.x_m, sc.ego.y_m, sc.ego.yaw_rad)
        actors = init_traffic(sc).states
        ws = WorldState(0, ego, actors, signal_states(sc, 0))
        names = ["camera_front_wide_120fov", "camera_cross_left_120fov"]
        batch = sensorsim_pb2.BatchRGBRenderRequest()
        for n in names:
            cam = convert.available_camera_from_proto(by_name[n])
            sensor = convert.pose_to_proto(convert.ego_pose(ego) @ cam.T_rig_camera)
            r = batch.items.add(camera_name=n).request
            r.scene_id, r.resolution_h, r.resolution_w = sc.id, cam.height, cam.width
            r.camera_intrinsics.CopyFrom(by_name[n].intrinsics)
            r.frame_start_us, r.frame_end_us = convert.to_wire_t(-30_000), convert.to_wire_t(0)
            r.sensor_pose.start_pose.CopyFrom(sensor)
            r.sensor_pose.end_pose.CopyFrom(sensor)
            r.image_format = sensorsim_pb2.PNG
            for a in sc.actors:
                if not a.is_static and actors[a.id].visible:
                    r.dynamic_objects.add(track_id=a.id, pose_pair=sensorsim_pb2.PosePair(
                        start_pose=convert.pose_to_proto(convert.box_pose(actors[a.id], a.height_m / 2)),
                        end_pose=convert.pose_to_proto(convert.box_pose(actors[a.id], a.height_m / 2))))
        resp = ss.batch_render_rgb(batch, timeout=120)
        assert [it.camera_name for it in resp.items] == names and all(it.success for it in resp.items)
        local = make_renderer(sc, default_rig(), backend="cv")
        for it in resp.items:
            img = decode_image(it.result.image_bytes)
            ref = local.render(ws, it.camera_name, -30_000, 0)
            assert img.shape == ref.shape == (320, 576, 3)
            # the wire rounds the sensor pose to float32: a handful of edge pixels may differ
            diff = np.abs(img.astype(int) - ref.astype(int)).max(axis=2)
            assert np.mean(diff > 8) < 0.01
        # an unknown camera fails its item only
        bad = sensorsim_pb2.BatchRGBRenderRequest()
        bad.items.add(camera_name="camera_front_wide_120fov").request.CopyFrom(batch.items[0].request)
        bad.items.add(camera_name="camera_does_not_exist").request.CopyFrom(batch.items[0].request)
        r2 = ss.batch_render_rgb(bad, timeout=120)
        assert [it.success for it in r2.items] == [True, False] and "unknown camera" in r2.items[1].error_message
        code = _code(ss.get_available_cameras, sensorsim_pb2.AvailableCamerasRequest(scene_id="nope-x"))[0]
        assert code == grpc.StatusCode.NOT_FOUND
    finally:
        ch.close()
        server.stop(grace=None)
        svc.close()
