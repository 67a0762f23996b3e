"""Services as subprocesses: readiness, a batch through them, a service killed mid-rollout, shutdown."""

import dataclasses
import os
import signal
import subprocess
import sys

import pytest

from cordillera.serve.client import GrpcRunFn, RemotePolicyFactory
from cordillera.serve.launcher import ServiceSupervisor, main_serve, policy_factory
from cordillera.sim.batch import run_batch
from cordillera.world import generator


def test_policy_factory_serves_the_expert_unprivileged_and_rejects_unknown_names():
    p = policy_factory("expert")()
    assert p.name == "expert" and p.privileged is False
    assert policy_factory("constant_velocity")().name
    with pytest.raises(ValueError, match="unknown driver policy"):
        policy_factory("nope")
    with pytest.raises(ValueError):
        main_serve("no_such_service", 0)


def test_batch_through_subprocess_services_survives_a_killed_service(tmp_path):
    scenarios = [dataclasses.replace(generator.make(f, 1000), duration_us=2_500_000)
                 for f in ("road_following", "car_following")]
    with ServiceSupervisor(("driver", "controller", "physics")) as sup:
        procs = dict(sup.procs)
        first_ports = {n: p.port for n, p in procs.items()}
        assert all(p.alive() for p in procs.values())

        class KillDriverOnce:
            done = False

            def after_commit(self, sim):
                if not self.done and sim.t_us == 2_000_000:
                    KillDriverOnce.done = True
                    os.kill(procs["driver"].proc.pid, signal.SIGKILL)
                    procs["driver"].proc.wait(10)

        run_fn = GrpcRunFn(sup.addresses, tmp_path, timeout_s=20, hooks=(KillDriverOnce(),))
        res = run_batch(scenarios, RemotePolicyFactory("expert"), tmp_path, workers=1, progress=False,
                        reference_factory=None, run_fn=run_fn, policy_name="expert")
        by_scene = {o.clipgt_id: o for o in res.outcomes}
        bad = by_scene[scenarios[0].id]
        assert bad.status == "failed"
        assert "driver service at 127.0.0.1:" in bad.error and "UNAVAILABLE" in bad.error
        assert by_scene[scenarios[1].id].status == "ok"  # the batch went on with a restarted driver
        assert procs["driver"].port != first_ports["driver"] and procs["driver"].alive()
        assert any("driver service exited" in m for m in sup.restarts)
        assert (tmp_path / "rollouts" / scenarios[1].id).exists()
        children = [p.proc for p in procs.values()]
    for c in children:  # the supervisor stopped every service
        assert c.poll() is not None


def test_cli_serve_prints_ready_and_stops_on_sigterm():
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "..", "src"))
    p = subprocess.Popen([sys.executable, "-m", "cordillera", "serve", "physics", "--port", "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = p.stdout.readline()
        parts = line.split()
        assert parts[:2] == ["READY", "physics"] and int(parts[2]) > 0
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
        p.stdout.close()
        p.stderr.close()


@pytest.mark.slow
def test_cli_sim_run_services_grpc_smoke_suite(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "..", "src"))
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "cordillera", "sim", "run", "--suite", "smoke", "--policy", "expert",
                        "--out", str(out), "--services", "grpc"], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "aggregate" / "metrics_results.txt").exists()
    asls = list((out / "rollouts").glob("*/*/rollout.asl"))
    assert len(asls) == len(generator.suite("smoke"))


def test_vla_policy_options_parse_from_the_spec():
    from cordillera.serve.launcher import _query_kwargs

    assert _query_kwargs("fast=1&num_samples=2&temperature=0.5&name=x") == {
        "fast": True, "num_samples": 2, "temperature": 0.5, "name": "x"}
    assert _query_kwargs("") == {} and _query_kwargs("use_nav=false") == {"use_nav": False}
    with pytest.raises(ValueError, match="key=value"):
        _query_kwargs("fast")
    with pytest.raises(ValueError, match="not found"):
        policy_factory("vla:/no/such/checkpoint?fast=1")
