"""The generated AlpaSim v0 protobuf / gRPC modules, built on first import if missing.

Usage::

    from cordillera.serve.stubs import common_pb2, egodriver_pb2, egodriver_pb2_grpc

The modules are ``cordillera.serve._generated.alpasim_grpc.v0.<name>_pb2`` (see
:mod:`cordillera.serve.build_protos`); their descriptors carry AlpaSim's file names
(``alpasim_grpc/v0/<name>.proto``) and full names (``egodriver.DriveRequest``), so messages and
gRPC method paths are the original's. Consequence: this module and a real ``alpasim_grpc`` package
cannot both be imported in one process (protobuf's default descriptor pool refuses a second,
different file of the same name).

Where the servicers plug in (a later step): a servicer subclasses e.g.
``egodriver_pb2_grpc.EgodriverServiceServicer`` and only converts messages with
:mod:`cordillera.serve.convert` before calling the in-process contracts (``Policy.plan`` for the
driver, the renderer for ``SensorsimService``, the controller/dynamics for ``VDCService``).
"""

from __future__ import annotations

import importlib

from cordillera import __version__
from cordillera.serve import build_protos

# [-] spec/alpasim.md header: alpasim_grpc package version 0.54.0 -> VersionId.grpc_api_version
GRPC_API_VERSION = (0, 54, 0)

PROTO_NAMES = ("common", "egodriver", "sensorsim", "controller", "physics", "traffic", "runtime",
               "logging", "video_model")
SERVICE_PROTO_NAMES = ("egodriver", "sensorsim", "controller", "physics", "traffic", "runtime", "video_model")

if not build_protos.is_fresh():
    build_protos.build()

_PKG = "cordillera.serve._generated.alpasim_grpc.v0"


def _load(name: str):
    return importlib.import_module(f"{_PKG}.{name}")


common_pb2 = _load("common_pb2")
sensorsim_pb2 = _load("sensorsim_pb2")
sensorsim_pb2_grpc = _load("sensorsim_pb2_grpc")
egodriver_pb2 = _load("egodriver_pb2")
egodriver_pb2_grpc = _load("egodriver_pb2_grpc")
controller_pb2 = _load("controller_pb2")
controller_pb2_grpc = _load("controller_pb2_grpc")
physics_pb2 = _load("physics_pb2")
physics_pb2_grpc = _load("physics_pb2_grpc")
traffic_pb2 = _load("traffic_pb2")
traffic_pb2_grpc = _load("traffic_pb2_grpc")
runtime_pb2 = _load("runtime_pb2")
runtime_pb2_grpc = _load("runtime_pb2_grpc")
video_model_pb2 = _load("video_model_pb2")
video_model_pb2_grpc = _load("video_model_pb2_grpc")
logging_pb2 = _load("logging_pb2")


def pb2(name: str):
    """The ``<name>_pb2`` module for one of :data:`PROTO_NAMES`."""
    if name not in PROTO_NAMES:
        raise ValueError(f"unknown proto {name!r}; expected one of {PROTO_NAMES}")
    return _load(f"{name}_pb2")


def pb2_grpc(name: str):
    """The ``<name>_pb2_grpc`` module for one of :data:`SERVICE_PROTO_NAMES`."""
    if name not in SERVICE_PROTO_NAMES:
        raise ValueError(f"proto {name!r} has no service; expected one of {SERVICE_PROTO_NAMES}")
    return _load(f"{name}_pb2_grpc")


def version_id(git_hash: str = "") -> "common_pb2.VersionId":
    """What every cordillera service answers to ``get_version``: our package version and the
    AlpaSim gRPC API version we are wire-compatible with (0.54.0)."""
    major, minor, patch = GRPC_API_VERSION
    return common_pb2.VersionId(
        version_id=__version__,
        git_hash=git_hash,
        grpc_api_version=common_pb2.VersionId.APIVersion(major=major, minor=minor, patch=patch),
    )


__all__ = [
    "GRPC_API_VERSION", "PROTO_NAMES", "SERVICE_PROTO_NAMES", "pb2", "pb2_grpc", "version_id",
    "common_pb2", "sensorsim_pb2", "sensorsim_pb2_grpc", "egodriver_pb2", "egodriver_pb2_grpc",
    "controller_pb2", "controller_pb2_grpc", "physics_pb2", "physics_pb2_grpc", "traffic_pb2",
    "traffic_pb2_grpc", "runtime_pb2", "runtime_pb2_grpc", "video_model_pb2", "video_model_pb2_grpc",
    "logging_pb2",
]
