"""The .asl rollout log (cordillera.serve.asl)."""

import struct

import pytest

from cordillera.geometry.pose import Pose
from cordillera.serve import convert as cv
from cordillera.serve.asl import AslTruncatedWarning, AslWriter, encode_record, read_asl, write_asl
from cordillera.serve.stubs import egodriver_pb2, logging_pb2


def _entries():
    meta = logging_pb2.RolloutMetadata(force_gt_duration=1_700_000)
    meta.session_metadata.session_uuid = "rollout-0"
    meta.session_metadata.control_timestep_us = 100_000
    a = meta.actor_definitions.actor_aabb.add(actor_id="EGO", actor_label="vehicle")
    a.aabb.CopyFrom(cv.aabb_to_proto([5.393, 2.109, 1.503]))
    poses = logging_pb2.ActorPoses(timestamp_us=1_689_697_803_493_732)
    poses.actor_poses.add(actor_id="EGO", actor_pose=cv.pose_to_proto(Pose.from_xy_yaw(1.0, 2.0, 0.5)))
    drive = egodriver_pb2.DriveRequest(session_uuid="rollout-0", time_now_us=100_000, time_query_us=200_000)
    image = egodriver_pb2.RolloutCameraImage(session_uuid="rollout-0")
    image.camera_image.image_bytes = bytes(range(256)) * 40
    image.camera_image.logical_id = "camera_front_wide_120fov"
    return [
        logging_pb2.LogEntry(rollout_metadata=meta),
        logging_pb2.LogEntry(actor_poses=poses),
        logging_pb2.LogEntry(driver_request=drive),
        logging_pb2.LogEntry(driver_camera_image=image),
    ]


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / "rollout.asl"
    entries = _entries()
    with AslWriter(path) as w:
        for e in entries:
            w.write(e)
        assert w.n_records == 4
    got = list(read_asl(path))
    assert got == entries
    assert [e.WhichOneof("log_entry") for e in got] == [
        "rollout_metadata", "actor_poses", "driver_request", "driver_camera_image"]
    assert got[1].actor_poses.timestamp_us == 1_689_697_803_493_732


def test_record_framing_is_big_endian_length_prefix(tmp_path):
    e = _entries()[2]
    payload = e.SerializeToString()
    assert encode_record(e) == struct.pack(">I", len(payload)) + payload
    path = tmp_path / "a.asl"
    write_asl(path, [e, e])
    raw = path.read_bytes()
    assert raw == 2 * (len(payload).to_bytes(4, "big") + payload)


def test_flushed_after_each_record(tmp_path):
    path = tmp_path / "live.asl"
    w = AslWriter(path)
    w.write(_entries()[0])
    assert len(list(read_asl(path))) == 1  # visible before close
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write(_entries()[0])


@pytest.mark.parametrize("cut", [1, 3, 4, 10])
def test_truncated_trailing_record_warns_and_keeps_the_rest(tmp_path, cut):
    path = tmp_path / "t.asl"
    entries = _entries()
    write_asl(path, entries)
    last_len = len(encode_record(entries[-1]))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - last_len + cut])  # keep `cut` bytes of the last record
    with pytest.warns(AslTruncatedWarning, match="record 3"):
        got = list(read_asl(path))
    assert got == entries[:3]


def test_corrupt_middle_record_raises(tmp_path):
    path = tmp_path / "c.asl"
    path.write_bytes(struct.pack(">I", 3) + b"\xff\xff\xff" + encode_record(_entries()[0]))
    with pytest.raises(ValueError, match="record 0"):
        list(read_asl(path))


def test_writer_rejects_bad_entries(tmp_path):
    with AslWriter(tmp_path / "x.asl") as w:
        with pytest.raises(ValueError, match="empty"):
            w.write(logging_pb2.LogEntry())
        with pytest.raises(ValueError, match="LogEntry"):
            w.write(egodriver_pb2.DriveRequest())
    assert (tmp_path / "x.asl").read_bytes() == b""
    with pytest.raises(ValueError, match="exists"):
        AslWriter(tmp_path / "x.asl", overwrite=False)


def test_empty_file_reads_as_no_records(tmp_path):
    (tmp_path / "e.asl").write_bytes(b"")
    assert list(read_asl(tmp_path / "e.asl")) == []


def test_unknown_fields_in_placeholder_video_model_slots_survive(tmp_path):
    # A real video-model SessionId would carry fields we do not declare (video_model.proto is a
    # placeholder): they must pass through read -> write unchanged.
    foreign = bytes([0x0A, 3]) + b"abc"  # field 1, length-delimited "abc"
    entry_wire = bytes([0xCA, 0x01, len(foreign)]) + foreign  # LogEntry field 25, wire type 2
    path = tmp_path / "v.asl"
    path.write_bytes(len(entry_wire).to_bytes(4, "big") + entry_wire)
    (entry,) = list(read_asl(path))
    assert entry.WhichOneof("log_entry") == "video_model_session_id"
    assert entry.SerializeToString() == entry_wire
