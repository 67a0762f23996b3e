"""A tiny end-to-end gRPC check through the generated stubs, plus get_version helpers."""

from concurrent import futures

import grpc
import pytest

from cordillera import __version__
from cordillera.serve import stubs
from cordillera.serve.stubs import common_pb2, egodriver_pb2_grpc


class _VersionOnlyDriver(egodriver_pb2_grpc.EgodriverServiceServicer):
    def get_version(self, request, context):
        return stubs.version_id(git_hash="abc123")


@pytest.fixture
def driver_channel():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    egodriver_pb2_grpc.add_EgodriverServiceServicer_to_server(_VersionOnlyDriver(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port > 0
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop(grace=None)


def test_get_version_over_grpc(driver_channel):
    stub = egodriver_pb2_grpc.EgodriverServiceStub(driver_channel)
    v = stub.get_version(common_pb2.Empty(), timeout=10, wait_for_ready=True)
    assert v.version_id == __version__ and v.git_hash == "abc123"
    assert (v.grpc_api_version.major, v.grpc_api_version.minor, v.grpc_api_version.patch) == (0, 54, 0)


def test_method_path_is_alpasims(driver_channel):
    # What AlpaSim's runtime sends on the wire: /egodriver.EgodriverService/get_version
    call = driver_channel.unary_unary("/egodriver.EgodriverService/get_version",
                                      request_serializer=lambda b: b, response_deserializer=lambda b: b)
    raw = call(b"", timeout=10)
    assert common_pb2.VersionId.FromString(raw).grpc_api_version.minor == 54


def test_unimplemented_method_reports_unimplemented(driver_channel):
    stub = egodriver_pb2_grpc.EgodriverServiceStub(driver_channel)
    with pytest.raises(grpc.RpcError) as e:
        stub.drive(stubs.egodriver_pb2.DriveRequest(session_uuid="s"), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_version_id_and_module_lookup():
    v = stubs.version_id()
    assert v.version_id == __version__ and v.grpc_api_version.minor == 54 and v.git_hash == ""
    assert stubs.pb2("logging") is stubs.logging_pb2
    assert stubs.pb2_grpc("sensorsim") is stubs.sensorsim_pb2_grpc
    with pytest.raises(ValueError):
        stubs.pb2("nope")
    with pytest.raises(ValueError):
        stubs.pb2_grpc("common")
