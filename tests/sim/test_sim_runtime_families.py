"""The runtime on every WORLD family (world.generator.make): runs clean, finite, deterministic."""

import math

import numpy as np
import pytest

from cordillera.sim.policies.baselines import RouteFollowerPolicy
from cordillera.sim.runtime import SimConfig, run_rollout

generator = pytest.importorskip("cordillera.world.generator")


@pytest.mark.parametrize("family", sorted(generator.FAMILIES))
def test_family_rollout_runs_clean(family):
    scn = generator.make(family, 1)
    ro = run_rollout(scn, RouteFollowerPolicy(), SimConfig(policy_timeout_s=0))
    assert ro.status == "ok", ro.error
    assert [s.t_us for s in ro.steps] == list(range(0, scn.duration_us + 1, 100_000))
    assert np.isfinite(ro.ego_xy_yaw()).all() and (ro.ego_speed_mps() >= 0).all()
    for s in ro.steps:
        assert set(s.actors) == {a.id for a in scn.actors}
        for a in s.actors.values():
            assert math.isfinite(a.x_m) and math.isfinite(a.y_m) and a.speed_mps >= 0.0
    # the ego starts where the scenario says
    assert ro.steps[0].ego.x_m == scn.ego.x_m and ro.steps[0].ego.y_m == scn.ego.y_m


@pytest.mark.parametrize("family", ["cut_in", "traffic_light", "jaywalker"])
def test_family_rollout_is_deterministic(family):
    scn = generator.make(family, 2)
    a = run_rollout(scn, RouteFollowerPolicy(), SimConfig(policy_timeout_s=0), seed=5)
    b = run_rollout(scn, RouteFollowerPolicy(), SimConfig(policy_timeout_s=0), seed=5)
    np.testing.assert_array_equal(a.ego_xy_yaw(), b.ego_xy_yaw())
    assert [s.actors for s in a.steps] == [s.actors for s in b.steps]
