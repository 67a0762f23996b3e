"""gRPC layer, wire-compatible with AlpaSim's v0 protocol (spec/alpasim.md §2).

- ``protos/alpasim_grpc/v0/*.proto`` — our own proto files with AlpaSim's packages, services,
  messages and field numbers; ``build_protos`` turns them into ``_generated/`` (built on first
  import of :mod:`cordillera.serve.stubs`, or by ``make install``).
- :mod:`cordillera.serve.stubs` — the generated ``*_pb2`` / ``*_pb2_grpc`` modules and
  :func:`~cordillera.serve.stubs.version_id` for ``get_version``.
- :mod:`cordillera.serve.convert` — protos <-> cordillera types; the only place where the
  (w, x, y, z) <-> (x, y, z, w) quaternion swap happens.
- :mod:`cordillera.serve.asl` — the ``.asl`` rollout log (length-prefixed ``logging.LogEntry``).

Servicers (driver over ``Policy``, renderer over ``Renderer``, controller over the sim controller
and dynamics) and the runtime client come later; they only convert with ``convert`` and call the
same in-process objects, holding no logic of their own.
"""
