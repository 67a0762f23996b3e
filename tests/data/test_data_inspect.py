"""`data inspect`: summary numbers and a contact sheet PNG."""

import numpy as np
from data_synth import FOUR_CAMERAS, make_clip

from cordillera.data import writer as W
from cordillera.data.inspect import main_inspect


def test_inspect_summary_and_contact_sheet(tmp_path):
    w = W.create(tmp_path, FOUR_CAMERAS, chunk_size=1)
    w.add_clip(make_clip("00000000-0000-4000-8000-000000000001", cameras=FOUR_CAMERAS))
    w.add_clip(make_clip("00000000-0000-4000-8000-000000000002", cameras=FOUR_CAMERAS, events=[], split="val",
                         metadata={"family": "cut_in", "category": "long_tail", "seed": 2}))
    w.finalize()
    s = main_inspect(tmp_path)
    assert s["clips"] == 2 and s["chunks"] == 2 and s["events"] == 1 and s["clips_with_events"] == 1
    assert s["families"] == {"road_following": 1, "cut_in": 1} and s["splits"] == {"train": 1, "val": 1}
    assert abs(s["duration_s"] - 18.0) < 1e-9
    import matplotlib.image as mpimg

    img = mpimg.imread(s["contact_sheet"])
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 800 and np.std(img) > 0.05
