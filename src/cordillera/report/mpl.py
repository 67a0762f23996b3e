"""matplotlib for files, never a window: every figure we draw is written to PNG, often in Ray workers
or CI without a display."""

from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (kept if a caller already chose one)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt
