"""The torch ``Dataset`` in front of :class:`PaiReader` + :func:`build_sample`, and a DataLoader helper.

One sample per (clip, event) (``per="event"``), per clip (first valid event, as PAIDataset), or
at the default keyframe 5.1 s (``use_default_keyframe=True``). Each worker process opens its own
reader lazily and keeps a per-worker LRU of decoded, resized frames, so the frames a clip's
samples share are decoded once. ``make_dataloader`` can group a clip's samples together
(``shuffle="clips"``) so that cache and the open video containers are reused.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cordillera.data import keys as K
from cordillera.data.reader import PaiReader
from cordillera.data.samples import FrameCache, build_sample, sample_points
from cordillera.render.rig import DEFAULT_MODEL_CAMERAS, MODEL_CARD_IMAGE_HW

__all__ = ["PaiDataset", "ClipGroupedSampler", "collate_samples", "make_dataloader"]

_TENSOR_KEYS = (K.IMAGE_FRAMES, K.CAMERA_INDICES, K.EGO_HISTORY_XYZ, K.EGO_HISTORY_ROT, K.EGO_FUTURE_XYZ,
                K.EGO_FUTURE_ROT, K.RELATIVE_TIMESTAMPS, K.ABSOLUTE_TIMESTAMPS)


class PaiDataset(Dataset):
    def __init__(self, root, image_hw=MODEL_CARD_IMAGE_HW, cameras=DEFAULT_MODEL_CAMERAS, per: str = "event",
                 use_default_keyframe: bool = False, filters: dict | None = None, frame_cache_frames: int = 256,
                 cache_streams: int = 8):
        self.root = root
        self.image_hw = None if image_hw is None else tuple(int(v) for v in image_hw)
        self.cameras = tuple(cameras)
        self.frame_cache_frames = int(frame_cache_frames)
        self._cache_streams = cache_streams
        reader = PaiReader(root, cache_streams=cache_streams)
        missing = [c for c in self.cameras if c not in reader.cameras()]
        if missing:
            raise ValueError(f"{root}: cameras {missing} not in the dataset (have {reader.cameras()})")
        self.index: list[tuple[str, int, str | None]] = []
        for cid in reader.clips(**(filters or {})):
            for t0, cot in sample_points(reader, cid, per=per, use_default_keyframe=use_default_keyframe):
                self.index.append((cid, t0, cot))
        self._reader = reader
        self._cache = FrameCache(self.frame_cache_frames)

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_reader"], d["_cache"] = None, None  # re-created in each worker
        return d

    @property
    def reader(self) -> PaiReader:
        if self._reader is None:
            self._reader = PaiReader(self.root, cache_streams=self._cache_streams)
            self._cache = FrameCache(self.frame_cache_frames)
        return self._reader

    def clip_of(self, i: int) -> str:
        return self.index[i][0]

    def sample_numpy(self, i: int) -> dict:
        cid, t0, cot = self.index[i]
        reader = self.reader
        return build_sample(reader, cid, t0, self.cameras, self.image_hw, cot=cot, frame_cache=self._cache)

    def __getitem__(self, i: int) -> dict:
        s = self.sample_numpy(i)
        for k in _TENSOR_KEYS:
            s[k] = torch.from_numpy(np.asarray(s[k]))
        return s


class ClipGroupedSampler(Sampler):
    """Shuffles clips (seeded, new order every epoch) but keeps each clip's samples together."""

    def __init__(self, dataset: PaiDataset, seed: int = 0):
        self.groups: dict[str, list[int]] = {}
        for i, (cid, _, _) in enumerate(dataset.index):
            self.groups.setdefault(cid, []).append(i)
        self.seed, self.epoch = int(seed), 0

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        clips = list(self.groups)
        for j in rng.permutation(len(clips)):
            yield from self.groups[clips[j]]

    def __len__(self) -> int:
        return sum(len(v) for v in self.groups.values())


def collate_samples(samples: list[dict]) -> dict:
    """Stack tensors along a new batch dim; keep strings/metadata as lists."""
    out = {}
    for k in samples[0]:
        vals = [s[k] for s in samples]
        if k in _TENSOR_KEYS:
            out[k] = torch.stack(vals)
        elif k == K.T0_US:
            out[k] = torch.tensor(vals, dtype=torch.int64)
        else:
            out[k] = vals
    return out


def _worker_init(_worker_id: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def make_dataloader(dataset: PaiDataset, batch_size: int = 8, num_workers: int = 2, shuffle="clips",
                    seed: int = 0, multiprocessing_context: str = "spawn", **kwargs) -> DataLoader:
    """DataLoader with worker processes. ``shuffle``: "clips" (clip-grouped), True, or False.

    Workers are *spawned* by default: forking a process whose OpenCV/FFmpeg thread pools are
    already running can deadlock the child."""
    sampler = ClipGroupedSampler(dataset, seed) if shuffle == "clips" else None
    gen = torch.Generator().manual_seed(seed)
    extra = {}
    if num_workers > 0:
        extra = {"multiprocessing_context": multiprocessing_context, "persistent_workers": True,
                 "worker_init_fn": _worker_init}
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_samples,
                      sampler=sampler, shuffle=(shuffle is True), generator=gen, **extra, **kwargs)
