"""Typed configuration: pydantic models that reject unknown keys, and YAML presets in ``configs/``.

Every run configuration is a ``StrictModel``; ``load_config(path, Model)`` reads a YAML file and
turns any validation problem into a one-line ``ConfigError`` naming the file and the key, e.g.
``configs/sim.yaml: sim.rollouts: Input should be a valid integer (got 'two')``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"

M = TypeVar("M", bound="StrictModel")


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the file and the key."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _format_validation_error(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            parts.append(f"{key}: unknown key")
        else:
            got = e.get("input")
            got_s = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
            parts.append(f"{key}: {e['msg']}{got_s}")
    return f"{source}: " + "; ".join(parts)


def parse_config(data: dict[str, Any], model: type[M], source: str = "<config>") -> M:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None


def load_config(path: str | Path, model: type[M], overrides: dict[str, Any] | None = None) -> M:
    """Load a YAML file into ``model``; ``overrides`` (dotted keys) are applied on top."""
    path = Path(path)
    if not path.exists() and not path.is_absolute() and (CONFIG_DIR / path).exists():
        path = CONFIG_DIR / path
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    for dotted, value in (overrides or {}).items():
        node = data
        *head, last = dotted.split(".")
        for k in head:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{path}: override {dotted!r} goes through a non-mapping key {k!r}")
        node[last] = value
    return parse_config(data, model, str(path))


def preset_path(name: str) -> Path:
    """``configs/<name>.yaml``; raises listing the available presets when missing."""
    p = CONFIG_DIR / f"{name}.yaml"
    if not p.exists():
        avail = sorted(x.stem for x in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(avail) or 'none'}")
    return p


# ----------------------------------------------------------------------------------------------
# Run configurations
# ----------------------------------------------------------------------------------------------
class SimSettings(StrictModel):
    # clocks
    control_period_us: int = Field(100_000, gt=0)  # [µs] spec/alpasim.md §1.3
    physics_substep_us: int = Field(10_000, gt=0)  # [µs] RK2 sub-steps ≤ 10 ms, spec/alpasim.md §2.4
    # ego
    controller: str = Field("tracking", pattern="^(tracking|perfect)$")
    force_gt_duration_us: int | None = Field(None, ge=0)  # None = the scenario's (1.7 s default)
    # sensors
    cameras: tuple[str, ...] = ()
    image_height: int = Field(320, gt=0)
    image_width: int = Field(576, gt=0)
    keep_images: bool = False
    # driver
    policy_timeout_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _check_clocks(self):
        if self.control_period_us % self.physics_substep_us:
            raise ValueError(
                f"control_period_us ({self.control_period_us}) must be a multiple of "
                f"physics_substep_us ({self.physics_substep_us})"
            )
        return self


class SimRunConfig(StrictModel):
    suite: str = "smoke"
    policy: str = "expert"
    rollouts: int = Field(1, ge=1)
    workers: int | None = Field(None, ge=1)  # None = all cores through Ray; 1 = serial
    address: str | None = None  # an existing Ray cluster
    video: bool = False
    sim: SimSettings = SimSettings()


class DemoConfig(StrictModel):
    suite: str = "demo"
    checkpoint: str = "checkpoints/nano"
    workers: int | None = Field(None, ge=1)
    video: bool = True
    sim: SimSettings = SimSettings()
