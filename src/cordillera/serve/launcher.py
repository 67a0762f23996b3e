"""Start services, wait for them, run a batch through them, stop them (the lightweight "wizard").

- ``cordillera serve driver|sensorsim|controller|traffic|physics --port P [--policy NAME]``
  → :func:`main_serve`: one gRPC server on ``127.0.0.1`` (port 0 = a free one), prints
  ``READY <service> <port>`` on stdout once it accepts calls, stops cleanly on SIGTERM/SIGINT.
- ``cordillera sim run --services grpc`` → :func:`main_sim_run_grpc`: starts the needed services as
  subprocesses (``python -m cordillera serve ...``) on free loopback ports, waits for readiness
  (``READY`` line, then ``get_version`` with ``wait_for_ready`` and a timeout), runs the batch
  through :class:`cordillera.serve.client.GrpcRunFn`, and stops every service — also on Ctrl-C or
  an error. A service that dies mid-rollout fails that rollout with an error naming it (and its exit
  code); it is restarted before the next rollout, so the batch continues.

Services started by default follow AlpaSim's defaults (spec/alpasim.md §1.1): driver, controller,
physics, and sensorsim when cameras are rendered; traffic runs in the runtime unless asked for
(AlpaSim's trafficsim is disabled by default).

Driver policies served: ``expert`` (the rule-based expert WITHOUT privileged access — over the
protocol it only sees what a driver sees, i.e. route following), ``constant_velocity``,
``route_follower``, and ``vla:<checkpoint dir>[?key=value&...]`` (:class:`cordillera.model.policy.VLAPolicy`
with options, e.g. ``vla:ckpt/nano?fast=1&num_samples=2``).
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cordillera.serve import servicers
from cordillera.serve.stubs import (
    common_pb2,
    controller_pb2_grpc,
    egodriver_pb2_grpc,
    physics_pb2_grpc,
    sensorsim_pb2_grpc,
    traffic_pb2_grpc,
)

log = logging.getLogger(__name__)

__all__ = ["SERVICES", "DEFAULT_SERVICES", "policy_factory", "make_server", "main_serve", "ServiceProcess",
           "ServiceSupervisor", "main_sim_run_grpc"]

SERVICES = ("driver", "sensorsim", "controller", "physics", "traffic")
DEFAULT_SERVICES = ("driver", "controller", "physics")  # + sensorsim when cameras are rendered
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0
SERVER_WORKERS = 8


def policy_factory(name: str):
    """A zero-argument factory of the driver policy ``name`` (one policy per session)."""
    if name == "expert":
        def make():
            from cordillera.sim.expert import ExpertPolicy

            return ExpertPolicy(privileged=False)
        return make
    if name in ("constant_velocity", "route_follower"):
        from cordillera.sim.batch import make_policy

        make_policy(name)  # validates now, not at the first session
        return lambda: make_policy(name)
    if name.startswith("vla:"):
        try:
            from cordillera.model.policy import VLAPolicyFactory
        except ImportError as e:
            raise ValueError(f"policy {name!r}: cordillera.model.policy is not available ({e})") from None
        spec, _, query = name.partition("?")
        return VLAPolicyFactory.from_spec(spec, **_query_kwargs(query))  # loads the checkpoint once per process
    raise ValueError(f"unknown driver policy {name!r}; valid: expert, constant_velocity, route_follower, vla:<checkpoint>")


def _query_kwargs(query: str) -> dict:
    """``"fast=1&num_samples=2"`` -> ``{"fast": True, "num_samples": 2}`` (VLA policy options)."""
    out = {}
    for item in filter(None, query.split("&")):
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ValueError(f"policy option {item!r} must be key=value")
        low = val.lower()
        if low in ("true", "false"):
            out[key] = low == "true"
        elif key == "fast":
            out[key] = val not in ("0", "")
        else:
            try:
                out[key] = int(val)
            except ValueError:
                try:
                    out[key] = float(val)
                except ValueError:
                    out[key] = val
    return out


def make_server(service: str, port: int = 0, policy: str = "expert", host: str = "127.0.0.1",
                workers: int = SERVER_WORKERS) -> tuple[grpc.Server, int, object]:
    """A started gRPC server for one service: ``(server, bound port, servicer)``."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; valid: {', '.join(SERVICES)}")
    opts = [("grpc.max_send_message_length", 64 * 2**20), ("grpc.max_receive_message_length", 64 * 2**20)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"grpc-{service}"),
                         options=opts)
    if service == "driver":
        svc = servicers.EgodriverService(policy_factory(policy))
        egodriver_pb2_grpc.add_EgodriverServiceServicer_to_server(svc, server)
    elif service == "sensorsim":
        svc = servicers.SensorsimService()
        sensorsim_pb2_grpc.add_SensorsimServiceServicer_to_server(svc, server)
    elif service == "controller":
        svc = servicers.VDCService()
        controller_pb2_grpc.add_VDCServiceServicer_to_server(svc, server)
    elif service == "physics":
        svc = servicers.PhysicsService()
        physics_pb2_grpc.add_PhysicsServiceServicer_to_server(svc, server)
    else:
        svc = servicers.TrafficService()
        traffic_pb2_grpc.add_TrafficServiceServicer_to_server(svc, server)
    bound = server.add_insecure_port(f"{host}:{int(port)}")
    if bound == 0:
        raise RuntimeError(f"could not bind {service} service to {host}:{port}")
    server.start()
    return server, bound, svc


def main_serve(service: str, port: int = 50051, policy: str = "expert") -> None:
    """``cordillera serve SERVICE --port P [--policy NAME]``; blocks until SIGTERM/SIGINT."""
    logging.basicConfig(level=os.environ.get("CORDILLERA_LOG", "WARNING"),
                        format=f"[{service}] %(levelname)s %(name)s: %(message)s")
    server, bound, svc = make_server(service, port, policy)
    stop = threading.Event()

    def _stop(*_):
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"READY {service} {bound}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop(grace=1.0).wait(STOP_TIMEOUT_S)
        getattr(svc, "close", lambda: None)()


# ----------------------------------------------------------------------------------------------
# Subprocesses
# ----------------------------------------------------------------------------------------------
def _child_env() -> dict:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])  # .../src, so the child imports this cordillera
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@dataclass(eq=False)
class ServiceProcess:
    """One ``python -m cordillera serve SERVICE --port 0`` child process."""

    service: str
    policy: str = "expert"
    proc: subprocess.Popen | None = None
    port: int | None = None
    stderr_tail: list = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        cmd = [sys.executable, "-m", "cordillera", "serve", self.service, "--port", "0", "--policy", self.policy]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env(), text=True,
                                     start_new_session=True)  # Ctrl-C reaches us, and we stop the child ourselves
        self.port = self._wait_ready_line(timeout_s)
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        ch = grpc.insecure_channel(self.address)
        try:
            stub = {"driver": egodriver_pb2_grpc.EgodriverServiceStub, "sensorsim": sensorsim_pb2_grpc.SensorsimServiceStub,
                    "controller": controller_pb2_grpc.VDCServiceStub, "physics": physics_pb2_grpc.PhysicsServiceStub,
                    "traffic": traffic_pb2_grpc.TrafficServiceStub}[self.service](ch)
            probe = stub.get_metadata if self.service == "traffic" else stub.get_version
            probe(common_pb2.Empty(), timeout=timeout_s, wait_for_ready=True)
        except grpc.RpcError as e:
            self.stop()
            raise RuntimeError(f"{self.service} service did not answer get_version: {e.code().name}: {e.details()}") from None
        finally:
            ch.close()

    def _wait_ready_line(self, timeout_s: float) -> int:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, min(0.5, deadline - time.monotonic()))):
                    if self.proc.poll() is not None:
                        break
                    continue
                line = self.proc.stdout.readline()
                if not line:
                    break
                parts = line.split()
                if len(parts) == 3 and parts[0] == "READY" and parts[1] == self.service:
                    return int(parts[2])
        finally:
            sel.close()
        err = ""
        if self.proc.poll() is not None:
            err = (self.proc.stderr.read() or "").strip().splitlines()[-5:]
        self.stop()
        raise RuntimeError(f"{self.service} service did not become ready within {timeout_s:.0f} s"
                           + (f"; it exited: {' | '.join(err)}" if err else ""))

    def _drain_stderr(self) -> None:
        proc = self.proc
        try:
            for line in proc.stderr:
                self.stderr_tail.append(line.rstrip())
                del self.stderr_tail[:-20]
        except (ValueError, OSError):
            pass

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout_s)
        for f in (p.stdout, p.stderr):
            try:
                f.close()
            except Exception:  # noqa: BLE001
                pass


class ServiceSupervisor:
    """The set of service processes of one run: start, report, restart the dead, stop all."""

    def __init__(self, services, policy: str = "expert"):
        unknown = [s for s in services if s not in SERVICES]
        if unknown:
            raise ValueError(f"unknown service(s) {unknown}; valid: {', '.join(SERVICES)}")
        if "driver" not in services:
            raise ValueError("the driver service is required")
        self.procs = {s: ServiceProcess(s, policy) for s in services}
        self.restarts: list[str] = []

    def __enter__(self) -> "ServiceSupervisor":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        for p in self.procs.values():
            p.start()

    def addresses(self):
        """Current addresses; services that died since the last call are restarted first."""
        from cordillera.serve.client import ServiceAddresses

        for name, p in self.procs.items():
            if not p.alive():
                msg = f"{name} service exited with code {p.exit_code()}; restarting it"
                log.warning(msg)
                self.restarts.append(msg)
                p.stop()
                p.start()
        return ServiceAddresses(**{name: p.address for name, p in self.procs.items()})

    def stop(self) -> None:
        for p in self.procs.values():
            try:
                p.stop()
            except Exception:  # noqa: BLE001 - stop the others anyway
                log.exception("stopping %s failed", p.service)


def main_sim_run_grpc(suite: str, policy: str, out, rollouts: int = 1, video: bool = False, progress: bool = True,
                      services: tuple[str, ...] | None = None, cameras: tuple[str, ...] = (), config=None):
    """``cordillera sim run --services grpc``: the suite's batch with every role served remotely
    (see the module docstring); the expert reference (and the MP4 with ``video``) run in-process.
    ``cameras`` default to the model's four for ``vla:`` policies, none otherwise. Returns the
    BatchResult."""
    from cordillera.serve.client import GrpcRunFn, RemotePolicyFactory
    from cordillera.sim.batch import _err, run_batch
    from cordillera.sim.runtime import SimConfig
    from cordillera.world import generator

    policy_factory(policy)  # fail fast on a bad name, before starting processes
    if not cameras and policy.startswith("vla:"):
        from cordillera.render.rig import DEFAULT_MODEL_CAMERAS

        cameras = DEFAULT_MODEL_CAMERAS
    config = config or SimConfig(cameras=tuple(cameras))
    if services is None:
        services = DEFAULT_SERVICES + (("sensorsim",) if config.cameras else ())
    scenarios, broken = [], {}
    for family, seed in generator.suite(suite):
        try:
            scenarios.append(generator.make(family, seed))
        except Exception as e:  # noqa: BLE001 - a broken family must not stop the suite
            broken[f"{family}-{int(seed):05d}"] = _err(e)
    with ServiceSupervisor(services, policy) as sup:
        if progress:
            sys.stderr.write("services: " + ", ".join(f"{n} at {p.address}" for n, p in sup.procs.items()) + "\n")
        run_fn = GrpcRunFn(sup.addresses, out)
        try:
            result = run_batch(scenarios, RemotePolicyFactory(policy), out, rollouts_per_scenario=rollouts, workers=1,
                               config=config, progress=progress, broken=broken, test_suite_id=suite, run_fn=run_fn,
                               policy_name=policy, description=f"suite={suite} policy={policy} services=grpc",
                               video=video)
        except KeyboardInterrupt:
            sys.stderr.write("interrupted: stopping services\n")
            raise
    if progress:
        sys.stdout.write(result.summary_text)
        for msg in sup.restarts:
            sys.stderr.write(msg + "\n")
    return result
