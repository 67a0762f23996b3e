"""``SimConfig(wire_precision=True)``: in-process and over gRPC give bit-identical rollouts.

The gRPC services (driver, controller, physics) run in this process on loopback ports; the
in-process rollout mirrors AlpaSim's float32 wire (``cordillera.serve.mirror``). Equality is
``np.array_equal`` — no tolerance — for ego poses and speeds, plans, and every metric array."""

import dataclasses

import numpy as np
import pytest

from cordillera.metrics.closedloop import compute_metrics
from cordillera.serve.client import ServiceAddresses, run_rollout_grpc
from cordillera.serve.launcher import make_server
from cordillera.serve.mirror import WirePolicy
from cordillera.sim.expert import ExpertPolicy
from cordillera.sim.runtime import SimConfig, Simulator, run_rollout
from cordillera.world import generator

SMOKE = generator.make_suite("smoke")


@pytest.fixture(scope="module")
def addresses():
    servers = {s: make_server(s, 0, "expert") for s in ("driver", "controller", "physics", "traffic")}
    yield {k: f"127.0.0.1:{v[1]}" for k, v in servers.items()}
    for s, _, _ in servers.values():
        s.stop(grace=None)


def _ego(ro) -> np.ndarray:
    return np.array([(s.ego.x_m, s.ego.y_m, s.ego.yaw_rad, s.ego.speed_mps, s.ego.accel_mps2, s.ego.yaw_rate_radps)
                     for s in ro.steps])


def _assert_identical(a, b, sc):
    assert a.status == b.status == "ok", (a.error, b.error)
    np.testing.assert_array_equal(a.t_us(), b.t_us())
    assert np.array_equal(_ego(a), _ego(b))
    for sa, sb in zip(a.steps, b.steps):
        assert np.array_equal(sa.plan.t_us, sb.plan.t_us) and np.array_equal(sa.plan.xyz_rig, sb.plan.xyz_rig)
        assert np.array_equal(sa.plan.yaw_rig, sb.plan.yaw_rig)
    ma = {r.name: r for r in compute_metrics(a, sc, None)}
    mb = {r.name: r for r in compute_metrics(b, sc, None)}
    assert ma.keys() == mb.keys() and len(ma) > 10
    for name in ma:
        assert np.array_equal(ma[name].valid, mb[name].valid), name
        assert np.array_equal(ma[name].values, mb[name].values, equal_nan=True), name


@pytest.mark.parametrize("sc", SMOKE, ids=lambda s: s.id)
def test_smoke_scenario_in_process_with_wire_precision_is_bit_identical_to_grpc(addresses, sc):
    cfg = SimConfig(wire_precision=True)
    a = run_rollout(sc, ExpertPolicy(privileged=False), cfg, rollout_id="wp", seed=7)
    addr = ServiceAddresses(driver=addresses["driver"], controller=addresses["controller"],
                            physics=addresses["physics"])
    b = run_rollout_grpc(sc, addr, cfg, "expert", "wp", 7)
    _assert_identical(a, b, sc)
    # and it is the float32 wire that made the difference: the float64 run differs, but only by rounding
    c = run_rollout(sc, ExpertPolicy(privileged=False), SimConfig(), rollout_id="wp", seed=7)
    d = np.abs(_ego(c)[:, :2] - _ego(a)[:, :2]).max()
    assert 0.0 < d < 0.02  # the float64 vs gRPC tolerance of test_serve_rollout.py


def test_traffic_service_is_not_mirrored_tightest_tolerance(addresses):
    """The traffic service rounds actor poses and recovers speeds from float32 forecast poses; the
    in-process IDM stays float64 (not mirrored). Measured over 20 s of car_following and cut_in:
    actors differ by ≤ 1.6e-5 m and the ego not at all (the differences never flip a decision here;
    in general they could, hence no equality claim beyond this scenario)."""
    sc = dataclasses.replace(generator.make("car_following", 1000), duration_us=8_000_000)
    cfg = SimConfig(wire_precision=True)
    a = run_rollout(sc, ExpertPolicy(privileged=False), cfg, rollout_id="wt", seed=1)
    b = run_rollout_grpc(sc, ServiceAddresses(**{k: addresses[k] for k in ("driver", "controller", "physics",
                                                                            "traffic")}), cfg, "expert", "wt", 1)
    assert a.status == b.status == "ok"
    assert np.array_equal(_ego(a), _ego(b))
    lead_a = np.array([(s.actors["lead"].x_m, s.actors["lead"].y_m) for s in a.steps])
    lead_b = np.array([(s.actors["lead"].x_m, s.actors["lead"].y_m) for s in b.steps])
    assert 0.0 < np.abs(lead_a - lead_b).max() < 1e-4


def test_wire_policy_keeps_the_policy_identity_and_privileges():
    sc = dataclasses.replace(SMOKE[0], duration_us=1_000_000)
    inner = ExpertPolicy()  # privileged: observe_world must still reach it
    sim = Simulator(sc, inner, SimConfig(wire_precision=True))
    assert isinstance(sim.policy, WirePolicy) and sim.policy.policy is inner
    assert sim.policy.name == inner.name and hasattr(sim.policy, "observe_world")
    assert sim.endpoints.controller is not None  # the loopback VDC service
    ro = sim.run()
    assert ro.status == "ok" and ro.policy_name == inner.name
    # perfect tracking has no controller on the wire: only the policy is wrapped
    sim = Simulator(sc, ExpertPolicy(), SimConfig(wire_precision=True, controller="perfect"))
    assert sim.endpoints.controller is None and isinstance(sim.policy, WirePolicy)
    # default: float64, nothing wrapped
    sim = Simulator(sc, inner, SimConfig())
    assert sim.policy is inner and sim.endpoints.controller is None
