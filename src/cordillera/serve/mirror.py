"""AlpaSim's float32 wire for in-process roles: ``SimConfig(wire_precision=True)``.

Over gRPC every pose, trajectory and dynamic state is float32 (``common.Vec3``/``Quat``/
``DynamicState``). With ``wire_precision`` the in-process loop rounds exactly the same quantities
at exactly the same boundaries, by running them through the very converters and servicer code
the gRPC path uses — so an in-process rollout and a rollout over the services are bit-identical.

The float64 -> float32 boundaries of one step (client -> service -> client):

1. driver ``submit_egomotion_observation``: ego history poses (xyz, quat) and DynamicStates
   (velocity, yaw rate, acceleration) -> float32; the driver rebuilds the ``Observation`` from them.
2. driver ``submit_route``: route waypoints (rig frame) -> float32.
3. driver ``drive`` answer: the plan is sent as ``local→rig`` poses relative to the driver's
   (float32) latest ego pose -> float32, and the client maps them back to the rig frame with its own
   (float64) latest ego pose; the same for the sampled alternatives.
4. controller request: ego pose + DynamicState -> float32; ``planned_trajectory_in_rig`` (the plan
   of 3.) -> float32 again. The VDC service keeps its session's full-precision state while the
   request equals it at wire precision (``servicers.VDCService``).
5. controller answer: next ego pose + DynamicState -> float32; the client commits that (steering
   re-estimated with :func:`~cordillera.serve.convert.kinematic_steering`).

Roles 1–3 are mirrored by :class:`WirePolicy` (same converters, same ``plan_response`` /
``_plan_from_response``); 4–5 by the real :class:`~cordillera.serve.servicers.VDCService` driven
in-process by the real :class:`~cordillera.serve.client.RemoteController` (a loopback stub instead
of a channel). Not mirrored (and not float rounding): physics (flat ground, the client keeps its
pose), the traffic service (actor poses and the ego box go float32 there; in-process traffic stays
float64), camera images (the sensorsim's JPEG), and privileged ``observe_world`` (not on the wire).
"""

from __future__ import annotations

import grpc
import numpy as np

from cordillera.geometry.pose import Pose
from cordillera.serve import convert
from cordillera.sim.types import EgoHistory

__all__ = ["WirePolicy", "wire_precision_roles"]


class _LoopbackError(grpc.RpcError):
    def __init__(self, code, details: str):
        super().__init__(details)
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


class _Context:
    """What a servicer's ``_guard`` needs of a gRPC context: ``abort`` raises like a failed RPC."""

    def abort(self, code, details):
        raise _LoopbackError(code, details)


class _LoopbackStub:
    """``stub.method(request, timeout=...)`` calls the servicer directly (no channel, no bytes)."""

    def __init__(self, servicer):
        self._servicer = servicer

    def __getattr__(self, method: str):
        fn = getattr(self._servicer, method)
        return lambda request, timeout=None, **kw: fn(request, _Context())


class _LoopbackChannels:
    def __init__(self, **servicers):
        self.stubs = {name: _LoopbackStub(s) for name, s in servicers.items()}

    def address(self, name: str) -> str:
        return f"in-process {name}"


class WirePolicy:
    """A policy seen through the driver service's float32 wire (boundaries 1–3 of the module doc).

    Everything else (``name``, ``start``, ``close``, ``observe_world``...) is the wrapped policy's."""

    over_wire = True

    def __init__(self, policy):
        self.policy = policy
        self._rows: dict[tuple, tuple] = {}  # committed history row -> its wire-rounded row

    def _wire_history(self, hist):
        """``hist`` as the driver service rebuilds it from ``submit_egomotion_observation``. Rows
        round independently, so each committed row goes through the converters once (as over gRPC,
        where each pose is sent once), not every step."""
        keys = [(int(t), a.tobytes()) for t, a in zip(hist.t_us.tolist(), np.concatenate(
            [hist.xyz_local, hist.quat_local, hist.velocity_rig_mps, hist.accel_rig_mps2, hist.yaw_rate_radps[:, None]],
            axis=1))]
        new = [i for i, k in enumerate(keys) if k not in self._rows]
        if new:
            sub = EgoHistory(*(np.asarray(a)[new] for a in (hist.t_us, hist.xyz_local, hist.quat_local,
                                                             hist.velocity_rig_mps, hist.accel_rig_mps2,
                                                             hist.yaw_rate_radps)))
            t, xyz, q, s12 = convert.ego_history_from_proto(*convert.ego_history_to_proto(sub))
            for j, i in enumerate(new):
                self._rows[keys[i]] = (t[j], xyz[j], q[j], s12[j])
        rows = [self._rows[k] for k in keys]
        self._rows = dict(zip(keys, rows))  # keep only the current window
        if not rows:
            return convert.ego_history_from_arrays(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 4)),
                                                   np.zeros((0, 12)))
        return convert.ego_history_from_arrays(*(np.stack(c) for c in zip(*rows)))

    def __getattr__(self, name: str):
        if name == "policy":  # not set yet (copy/unpickle): no recursion
            raise AttributeError(name)
        return getattr(self.policy, name)

    def plan(self, observation, t_now_us: int, t_query_us: int):
        from cordillera.serve.client import _plan_from_response
        from cordillera.serve.servicers import DEFAULT_HISTORY_POSES, plan_response
        from cordillera.sim.runtime import build_observation

        hist = observation.ego_history
        wire_hist = self._wire_history(hist)
        _, route = convert.route_from_proto(convert.route_to_proto(convert.to_wire_t(t_now_us), observation.route_rig))
        obs = build_observation(t_now_us, observation.cameras, wire_hist, route, observation.nav_text,
                                DEFAULT_HISTORY_POSES)
        plan = self.policy.plan(obs, t_now_us, t_query_us)
        h = obs.ego_history
        resp = plan_response(plan, int(t_now_us), int(h.t_us[-1]), Pose(h.xyz_local[-1], h.quat_local[-1]), {})
        return _plan_from_response(resp, int(t_now_us), Pose(hist.xyz_local[-1], hist.quat_local[-1]))


class _ControllerSession:
    """Hook opening/closing the loopback controller's session with the rollout (as ``GrpcSession``)."""

    def __init__(self, controller):
        self.controller = controller

    def before_start(self, sim) -> None:
        self.controller.start(sim.rollout_id)

    def on_close(self, sim, rollout) -> None:
        self.controller.close()


def wire_precision_roles(policy, endpoints, config):
    """(policy, endpoints) with every *in-process* role behind the float32 wire: the policy wrapped
    in :class:`WirePolicy` unless it already talks over a wire (``over_wire``), and the tracking
    controller replaced by a loopback ``VDCService`` unless a controller endpoint is given."""
    from dataclasses import replace

    from cordillera.serve.client import RemoteController
    from cordillera.serve.servicers import VDCService

    if not getattr(policy, "over_wire", False):
        policy = WirePolicy(policy)
    if endpoints.controller is None and config.controller == "tracking":
        ctrl = RemoteController(_LoopbackChannels(controller=VDCService(config.physics_substep_us)))
        endpoints = replace(endpoints, controller=ctrl, hooks=(_ControllerSession(ctrl), *endpoints.hooks))
    return policy, endpoints
