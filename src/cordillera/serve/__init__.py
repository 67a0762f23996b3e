"""gRPC layer, wire-compatible with AlpaSim's v0 protocol (spec/alpasim.md §2).

- ``protos/alpasim_grpc/v0/*.proto`` — our own proto files with AlpaSim's packages, services,
  messages and field numbers; ``build_protos`` turns them into ``_generated/`` (built on first
  import of :mod:`cordillera.serve.stubs`, or by ``make install``).
- :mod:`cordillera.serve.stubs` — the generated ``*_pb2`` / ``*_pb2_grpc`` modules and
  :func:`~cordillera.serve.stubs.version_id` for ``get_version``.
- :mod:`cordillera.serve.convert` — protos <-> cordillera types; the only place where the
  (w, x, y, z) <-> (x, y, z, w) quaternion swap happens.
- :mod:`cordillera.serve.asl` — the ``.asl`` rollout log (length-prefixed ``logging.LogEntry``).
- :mod:`cordillera.serve.servicers` — the five services over the in-process objects (driver over
  any ``Policy``, sensorsim over the renderer, VDC controller, flat physics, IDM/log traffic).
- :mod:`cordillera.serve.client` — the runtime as AlpaSim-style client: remote endpoints plugged
  into the one ``Simulator`` loop, ``rollout.asl`` logging, a ``run_fn`` for ``run_batch``.
- :mod:`cordillera.serve.mirror` — ``SimConfig(wire_precision=True)``: in-process roles behind
  the same float32 wire boundaries, bit-identical to a rollout over the services.
- :mod:`cordillera.serve.launcher` — ``cordillera serve ...`` and ``sim run --services grpc``
  (services as subprocesses on free loopback ports).
"""
