"""The same scenario + seed + policy in-process and over gRPC, and the ``rollout.asl`` it writes.

With the default ``SimConfig()`` (float64 in-process) equality is to float32 precision, not bit
for bit: AlpaSim's wire carries poses as float32 (``common.Vec3``/``Quat``), so every pose the
driver sees and every plan pose it returns is rounded (≈ 6e-6 m at 100 m from the origin). The
controller service keeps full precision across a session, so the remaining differences are those
roundings; they stay at millimetres over a 20 s rollout and leave every boolean metric identical.
``SimConfig(wire_precision=True)`` rounds the in-process roles the same way: then the whole smoke
suite is bit-identical (the slow batch test here, ``test_serve_wire_precision.py`` per rollout)."""

import dataclasses
from concurrent import futures

import grpc
import numpy as np
import pytest

from cordillera.metrics.closedloop import compute_metrics
from cordillera.serve import convert
from cordillera.serve.asl import read_asl
from cordillera.serve.client import ServiceAddresses, run_rollout_grpc
from cordillera.serve.launcher import make_server
from cordillera.serve.servicers import SensorsimService
from cordillera.serve.stubs import sensorsim_pb2, sensorsim_pb2_grpc
from cordillera.sim.expert import ExpertPolicy
from cordillera.sim.runtime import SimConfig, run_rollout
from cordillera.world import generator

POS_TOL_M = 0.02  # float32 wire rounding accumulated over a rollout (measured: ≤ 5 mm over 20 s)
BOOLEAN_METRICS = ("collision_any", "collision_front", "collision_lateral", "collision_rear", "offroad", "wrong_lane",
                   "red_light_violation", "stop_sign_violation")


@pytest.fixture(scope="module")
def services():
    servers = {s: make_server(s, 0, "expert") for s in ("driver", "controller", "physics", "traffic")}
    svc = SensorsimService(backend="cv")
    ss = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                     options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)])
    sensorsim_pb2_grpc.add_SensorsimServiceServicer_to_server(svc, ss)
    port = ss.add_insecure_port("127.0.0.1:0")
    ss.start()
    addr = {k: f"127.0.0.1:{v[1]}" for k, v in servers.items()} | {"sensorsim": f"127.0.0.1:{port}"}
    yield addr
    for s, _, _ in servers.values():
        s.stop(grace=None)
    ss.stop(grace=None)
    svc.close()


def _short(family: str, seed: int, duration_us: int):
    return dataclasses.replace(generator.make(family, seed), duration_us=duration_us)


def _compare(a, b, sc, ref):
    assert a.status == b.status == "ok", (a.error, b.error)
    assert len(a.steps) == len(b.steps)
    np.testing.assert_array_equal(a.t_us(), b.t_us())
    d = np.abs(a.ego_xy_yaw() - b.ego_xy_yaw())
    assert d[:, :2].max() < POS_TOL_M and d[:, 2].max() < 1e-3
    # the force-GT warm-up does not depend on the driver at all: identical
    fgt = np.array([s.force_gt for s in a.steps])
    assert np.array_equal(a.ego_xy_yaw()[fgt], b.ego_xy_yaw()[fgt])
    ma = {r.name: r for r in compute_metrics(a, sc, ref)}
    mb = {r.name: r for r in compute_metrics(b, sc, ref)}
    assert ma.keys() == mb.keys()
    for name in ma:
        va, vb = ma[name], mb[name]
        np.testing.assert_array_equal(va.valid, vb.valid, err_msg=name)
        if name in BOOLEAN_METRICS:
            np.testing.assert_array_equal(va.values, vb.values, err_msg=name)
        else:
            x, y = va.values[va.valid], vb.values[vb.valid]
            fin = np.isfinite(x) & np.isfinite(y)
            assert np.array_equal(np.isfinite(x), np.isfinite(y)), name
            # second derivatives (jerk) amplify mm differences: compare scaled to the signal
            scale = 1.0 if not name.endswith(("jerk", "yaw_accel")) else max(1.0, float(np.abs(x[fin]).max(initial=0)))
            assert np.abs(x[fin] - y[fin]).max(initial=0) < 0.05 * scale, name
    return ma, mb


def test_fast_one_scenario_in_process_equals_grpc_all_services(services, tmp_path):
    sc = _short("car_following", 1000, 4_000_000)
    cfg = SimConfig()
    a = run_rollout(sc, ExpertPolicy(privileged=False), cfg, rollout_id="r", seed=3)
    addr = ServiceAddresses(driver=services["driver"], controller=services["controller"], physics=services["physics"],
                            traffic=services["traffic"])
    b = run_rollout_grpc(sc, addr, cfg, "expert", "r", 3, None, tmp_path / "rollout.asl")
    _compare(a, b, sc, None)
    # actors: IDM on the traffic service, the same to float32 precision
    for sa, sb in zip(a.steps, b.steps):
        for aid, st in sa.actors.items():
            assert st.visible == sb.actors[aid].visible
            if st.visible:
                assert abs(st.x_m - sb.actors[aid].x_m) < POS_TOL_M and abs(st.y_m - sb.actors[aid].y_m) < POS_TOL_M
    # plans: same trajectories (rig frame) to float32 precision, same decisions
    for sa, sb in zip(a.steps, b.steps):
        np.testing.assert_array_equal(sa.plan.t_us, sb.plan.t_us)
        assert np.abs(sa.plan.xyz_rig - sb.plan.xyz_rig).max() < POS_TOL_M
        assert sa.plan.decisions == sb.plan.decisions


def test_asl_has_metadata_first_then_alpasim_step_order(services, tmp_path):
    sc = _short("car_following", 1000, 2_500_000)
    cams = ("camera_front_wide_120fov", "camera_cross_left_120fov")
    cfg = SimConfig(cameras=cams)
    addr = ServiceAddresses(**services)
    path = tmp_path / "rollout.asl"
    ro = run_rollout_grpc(sc, addr, cfg, "expert", "r-asl", 0, None, path, image_format=sensorsim_pb2.PNG)
    assert ro.status == "ok", ro.error
    entries = list(read_asl(path))
    kinds = [e.WhichOneof("log_entry") for e in entries]
    assert kinds[0] == "rollout_metadata"
    assert kinds[1:7] == ["available_cameras_request", "available_cameras_return", "available_ego_masks_request",
                          "available_ego_masks_return", "driver_session_request", "traffic_session_request"]
    assert kinds[7] == "actor_poses"
    meta = entries[0].rollout_metadata
    assert meta.session_metadata.session_uuid == "r-asl" and meta.session_metadata.scene_id == sc.id
    assert meta.actor_definitions.actor_aabb[0].actor_id == "EGO"
    assert meta.force_gt_duration == sc.force_gt_duration_us
    # per step (spec/alpasim.md §5.3); the last step ends after the driver (SimulationEndEvent)
    closed = ["batch_render_request"] + ["driver_camera_image"] * 2 + [
        "driver_ego_trajectory", "route_request", "driver_request", "driver_return", "controller_request",
        "controller_return"]
    steps, i = [], 8
    while i < len(kinds):
        j = kinds.index("actor_poses", i) + 1 if "actor_poses" in kinds[i:] else len(kinds)
        steps.append(kinds[i:j])
        i = j
    n = len(ro.steps)
    assert len(steps) == n
    fgt_steps = sum(s.force_gt for s in ro.steps)
    for k, st in enumerate(steps[:-1]):
        body = closed + ([] if k < fgt_steps else ["physics_request", "physics_return"]) + [
            "traffic_request", "traffic_return", "actor_poses"]
        assert st == body, (k, st)
    assert steps[-1] == closed[:7]
    # invariants visible in the log
    ctrl = [e.controller_request for e in entries if e.WhichOneof("log_entry") == "controller_request"]
    for prev, nxt in zip(ctrl, ctrl[1:]):
        assert nxt.state.timestamp_us == prev.future_time_us
    assert [c.coerce_dynamic_state for c in ctrl] == [s.force_gt for s in ro.steps[:-1]]
    for e in entries:
        k = e.WhichOneof("log_entry")
        if k == "batch_render_request":
            assert sorted(it.camera_name for it in e.batch_render_request.items) == sorted(cams)
        if k == "driver_return":
            assert len(e.driver_return.trajectory.poses) >= 21
        if k == "actor_poses":
            assert e.actor_poses.actor_poses[-1].actor_id == "EGO"
    tq = [convert.from_wire_t(e.traffic_request.time_query_us) for e in entries
          if e.WhichOneof("log_entry") == "traffic_request"]
    assert tq == [s.t_us + 100_000 for s in ro.steps[:-1]]
    first_ego = next(e.driver_ego_trajectory for e in entries if e.WhichOneof("log_entry") == "driver_ego_trajectory")
    assert len(first_ego.trajectory.poses) == SimConfig().history_poses  # the whole seeded history first


def test_cameras_over_grpc_reach_the_policy_as_rendered(services):
    """PNG is lossless: the frames the remote driver decodes are the renderer's pixels."""
    from cordillera.render import make_renderer

    sc = _short("car_following", 1000, 500_000)
    cams = ("camera_front_wide_120fov",)
    cfg = SimConfig(cameras=cams, keep_images=True)
    ro = run_rollout_grpc(sc, ServiceAddresses(**services), cfg, "expert", "r-img", 0, None,
                          image_format=sensorsim_pb2.PNG)
    assert ro.status == "ok", ro.error
    local = make_renderer(sc, backend="cv")
    for st in ro.steps[:3]:
        from cordillera.world.scenario import WorldState

        ws = WorldState(st.t_us, st.ego, st.actors, st.signals)
        ref = local.render(ws, cams[0], st.t_us - 30_000, st.t_us)
        img = st.frames[cams[0]].image
        assert img.shape == ref.shape
        assert np.mean(np.abs(img.astype(int) - ref.astype(int)).max(axis=2) > 8) < 0.01
        assert len(st.frames[cams[0]].image.encoded) > 0  # forwarded to the driver as received


def test_a_dead_service_fails_the_rollout_with_a_clear_error(tmp_path):
    sc = _short("road_following", 1000, 3_000_000)
    server, port, _ = make_server("controller", 0)
    drv, dport, _ = make_server("driver", 0)
    try:
        class Kill:
            def after_commit(self, sim):
                if sim.t_us == 2_000_000:
                    server.stop(grace=None).wait(5)

        addr = ServiceAddresses(driver=f"127.0.0.1:{dport}", controller=f"127.0.0.1:{port}")
        ro = run_rollout_grpc(sc, addr, SimConfig(), "expert", "dead", 0, None, tmp_path / "x.asl", hooks=(Kill(),),
                              timeout_s=10)
        assert ro.status == "failed"
        assert f"controller service at 127.0.0.1:{port} failed in run_controller_and_vehicle: UNAVAILABLE" in ro.error
        assert ro.steps[-1].t_us == 2_000_000  # the steps before the failure are kept
    finally:
        drv.stop(grace=None)


@pytest.mark.slow
def test_smoke_suite_in_process_equals_grpc(services, tmp_path):
    from cordillera.serve.client import GrpcRunFn, RemotePolicyFactory
    from cordillera.sim.batch import PolicyFactory, run_batch

    scenarios = generator.make_suite("smoke")
    addr = ServiceAddresses(driver=services["driver"], controller=services["controller"], physics=services["physics"])
    cfg = SimConfig(wire_precision=True)  # in-process behind the same float32 wire: bit-identical results
    a = run_batch(scenarios, PolicyFactory("expert", (("privileged", False),)), tmp_path / "inproc", workers=1,
                  config=cfg, progress=False, policy_name="expert")
    b = run_batch(scenarios, RemotePolicyFactory("expert"), tmp_path / "grpc", workers=1, progress=False,
                  config=cfg, run_fn=GrpcRunFn(addr, tmp_path / "grpc"), policy_name="expert")
    assert a.n_failed == b.n_failed == 0
    import polars as pl

    ra = pl.read_parquet(tmp_path / "inproc" / "aggregate" / "metrics_results.parquet")
    rb = pl.read_parquet(tmp_path / "grpc" / "aggregate" / "metrics_results.parquet")
    assert ra.columns == rb.columns and ra.height == rb.height
    for col in ra.columns:
        if col in ("run_uuid", "run_name"):  # each batch is its own run
            continue
        if ra[col].dtype in (pl.Float64, pl.Float32):
            x, y = ra[col].to_numpy(), rb[col].to_numpy()
            assert np.array_equal(x, y, equal_nan=True), col
        else:
            assert ra[col].to_list() == rb[col].to_list(), col
    asls = list((tmp_path / "grpc" / "rollouts").glob("*/*/rollout.asl"))
    assert len(asls) == len(scenarios) and all(p.stat().st_size > 0 for p in asls)
    sa = (tmp_path / "inproc" / "aggregate" / "metrics_results.txt").read_text()
    sb = (tmp_path / "grpc" / "aggregate" / "metrics_results.txt").read_text()
    assert sa.count("\n") == sb.count("\n")
