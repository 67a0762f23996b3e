import pytest
import torch

from cordillera.model.inference import Planner


@pytest.fixture(scope="module")
def planner(nano_model, nano_processor):
    return Planner(nano_model, nano_processor)


def test_plan_shapes_coc_and_camera_subset(planner, sample_factory):
    s = sample_factory(0, future=False)
    r = planner.plan(s, num_samples=2, max_new_tokens=8, cameras=["camera_front_wide_120fov"],
                     generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert r.xyz.shape == (1, 2, 64, 3) and r.yaw_rad.shape == (1, 2, 64)
    assert len(r.coc) == 1 and len(r.coc[0]) == 2 and all(isinstance(c, str) for c in r.coc[0])
    torch.testing.assert_close(r.yaw_rad, torch.atan2(r.rot[..., 1, 0], r.rot[..., 0, 0]))
    assert {"vision_ms", "prefill_ms", "decode_ms", "expert_ms", "processor_ms"} <= set(r.timings_ms)
    fast = planner.plan(s, fast=True, nav_text="Turn left in 30m")
    assert fast.coc == [[""]]
    with pytest.raises(ValueError, match="cameras"):
        planner.plan({**s, "camera_indices": [0, 1, 2, 3]}, cameras=[6])


def test_ask_returns_one_answer_per_input(planner, sample_factory):
    ans = planner.ask([sample_factory(0, future=False, cams=(1,))] * 2, "Is the light red?", max_new_tokens=4)
    assert len(ans) == 2 and all(isinstance(a, str) for a in ans)
