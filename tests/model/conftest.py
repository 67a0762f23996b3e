"""Shared fixtures for the model tests: the nano tokenizer/processor, a random-init nano model, samples."""

import pytest
import torch

from cordillera.model.configuration import PRESETS

# The machine is shared: one intra-op thread avoids oversubscription (2 threads under load were 10x slower).
torch.set_num_threads(1)


def make_sample(seed: int = 0, cot=None, nav=None, future=True, cams=(0, 1, 2, 6), speed_mps=8.0, n_frames=4):
    """A straight-driving sample with random images (4 frames per camera)."""
    g = torch.Generator().manual_seed(seed)
    cfg = PRESETS["nano"]
    h, w = cfg.inputs.image_height, cfg.inputs.image_width
    th = (torch.arange(16, dtype=torch.float32) - 15) * 0.1
    hist = torch.stack([th * speed_mps, torch.zeros(16), torch.zeros(16)], -1)
    s = dict(
        image_frames=torch.randint(0, 256, (len(cams), n_frames, 3, h, w), dtype=torch.uint8, generator=g),
        camera_indices=list(cams),
        ego_history_xyz=hist,
        ego_history_rot=torch.eye(3).expand(16, 3, 3).clone(),
        cot=cot,
        nav_text=nav,
    )
    if future:
        tf = torch.arange(1, 65, dtype=torch.float32) * 0.1
        s["ego_future_xyz"] = torch.stack([tf * speed_mps, torch.zeros(64), torch.zeros(64)], -1)
        s["ego_future_rot"] = torch.eye(3).expand(64, 3, 3).clone()
    return s


@pytest.fixture(scope="session")
def nano_cfg():
    return PRESETS["nano"]


@pytest.fixture(scope="session")
def nano_tokenizer(nano_cfg):
    from cordillera.model.tokenizer import load_tokenizer

    return load_tokenizer(nano_cfg)


@pytest.fixture(scope="session")
def nano_processor(nano_cfg, nano_tokenizer):
    from cordillera.model.processor import VLAProcessor

    return VLAProcessor(nano_cfg, nano_tokenizer)


@pytest.fixture(scope="session")
def nano_model(nano_cfg):
    from cordillera.model.modeling import CordilleraVLA

    torch.manual_seed(0)
    return CordilleraVLA(nano_cfg).eval()


@pytest.fixture(scope="session")
def sample_factory():
    return make_sample
