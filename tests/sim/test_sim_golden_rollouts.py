"""Speed work on the simulator must not change what it simulates: fixed rollouts match the recording.

The arrays (ego and actor states, plan poses, every metric) of 3 smoke-suite scenarios driven by the
expert, the constant-velocity baseline on the same scenarios with the expert as reference, and the
benchmarks/sim_speed.py scenario were recorded before the traffic/expert speed-ups (see
sim_golden_rollouts.py); they must agree to 1e-9.
"""

import numpy as np
import pytest
from sim_golden_rollouts import GOLDEN_FILE, golden_arrays


@pytest.fixture(scope="module")
def current():
    return golden_arrays()


def test_golden_rollouts_reproduce_the_recording(current):
    golden = np.load(GOLDEN_FILE)
    assert sorted(current) == sorted(golden.files)
    bad = []
    for name in golden.files:
        want, got = golden[name], current[name]
        if want.shape != got.shape or not np.allclose(got, want, rtol=0.0, atol=1e-9, equal_nan=True):
            err = np.nanmax(np.abs(got - want)) if want.shape == got.shape else f"shape {got.shape} != {want.shape}"
            bad.append(f"{name}: {err}")
    assert not bad, "rollouts changed:\n" + "\n".join(bad[:20])


def test_golden_rollouts_exercise_traffic(current):
    """The recording is not trivial: 20 bench actors drive, the cutter changes lanes, the lead moves."""
    bench = [v for k, v in current.items() if k.startswith("bench-0/actor/")]
    assert len(bench) == 20 and all(np.ptp(a[:, 0]) > 100.0 for a in bench)
    assert np.ptp(current["cut_in-1000/actor/cutter"][:, 1]) > 3.0  # a whole 3.6 m lane
    lead = current["car_following-1000/actor/lead"]
    assert np.ptp(lead[:, 0]) > 50.0
