"""Plan validation: the runtime's guard against NaN, empty, backwards or late plans."""

import numpy as np
import pytest

from cordillera.sim.types import Plan


def straight_plan(t0=1_000_000, n=65, speed=10.0):
    t = t0 + np.arange(n, dtype=np.int64) * 100_000
    xyz = np.zeros((n, 3))
    xyz[:, 0] = speed * (t - t0) / 1e6
    return Plan(t_us=t, xyz_rig=xyz, yaw_rig=np.zeros(n))


def test_valid_plan_passes():
    straight_plan().validate(1_000_000)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: Plan(p.t_us[:1], p.xyz_rig[:1], p.yaw_rig[:1]), "empty"),
        (lambda p: Plan(p.t_us, np.where(np.arange(65)[:, None] == 5, np.nan, p.xyz_rig), p.yaw_rig), "NaN"),
        (lambda p: Plan(p.t_us[::-1], p.xyz_rig, p.yaw_rig), "strictly increasing"),
        (lambda p: Plan(p.t_us[:15], p.xyz_rig[:15], p.yaw_rig[:15]), "needs >= 2 s"),
        (lambda p: Plan(p.t_us + 100_000, p.xyz_rig, p.yaw_rig), "must start at t_now_us"),
        (lambda p: Plan(p.t_us, p.xyz_rig + [3.0, 0, 0], p.yaw_rig), "current pose"),
        (lambda p: Plan(p.t_us, p.xyz_rig[:, :2], p.yaw_rig), "shapes disagree"),
    ],
)
def test_invalid_plans_say_what_is_wrong(mutate, message):
    with pytest.raises(ValueError, match=message):
        mutate(straight_plan()).validate(1_000_000)


def test_warming_up_plan_is_exempt():
    Plan(np.zeros(0, dtype=np.int64), np.zeros((0, 3)), np.zeros(0), warming_up=True).validate(0)
