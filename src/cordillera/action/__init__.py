"""Unicycle acceleration/curvature action space and trajectory tokenizers (spec/alpamayo_model.md §2.3, §3).

``ActionSpaceConfig`` is importable without torch; every other name loads torch on first use.
"""

from importlib import import_module

from cordillera.action.config import ActionSpaceConfig

_LAZY = {
    "estimate_v0": "cordillera.action.unicycle",
    "traj_to_action": "cordillera.action.unicycle",
    "action_to_traj": "cordillera.action.unicycle",
    "solve_regularized": "cordillera.action.unicycle",
    "normalize_actions": "cordillera.action.unicycle",
    "denormalize_actions": "cordillera.action.unicycle",
    "compute_action_stats": "cordillera.action.unicycle",
    "is_within_bounds": "cordillera.action.unicycle",
    "DiscreteTrajectoryTokenizer": "cordillera.action.tokenizers",
    "DeltaHistoryTokenizer": "cordillera.action.tokenizers",
}

__all__ = ["ActionSpaceConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cordillera.action' has no attribute {name!r}")
