"""Hand-written AlpaSim v0 field tables, transcribed from spec/alpasim.md §2.1–§2.6, §2.8, §2.9.

Independent of our .proto files on purpose: tests build descriptors from these tables and
compare them with the generated ones, and round-trip messages through both.

A field is ``name: (number, type[, flag])`` where type is a scalar protobuf type name, or
``M:<full name>`` (message) or ``E:<full name>`` (enum); flag is ``"rep"`` (repeated),
``"opt"`` (proto3 ``optional``) or ``"oneof:<group>"``.
"""

from __future__ import annotations

V = "common.Vec3"
P = "M:common.Pose"
T = "M:common.Trajectory"
S = "nre.grpc.protos.sensorsim."

FILES = {
    # proto file -> (package, dependencies)
    "common": ("common", []),
    "sensorsim": ("nre.grpc.protos.sensorsim", ["common"]),
    "egodriver": ("egodriver", ["common", "sensorsim"]),
    "controller": ("controller", ["common"]),
    "physics": ("physics", ["common"]),
    "traffic": ("traffic", ["common"]),
    "video_model": ("omnidreams.video_model", ["common"]),
    "logging": ("logging", ["common", "sensorsim", "egodriver", "physics", "traffic", "controller", "video_model"]),
}

MESSAGES: dict[str, dict[str, tuple]] = {
    # --- common.proto (§2.1) -------------------------------------------------------------------
    "common.Empty": {},
    "common.Quat": {"w": (1, "float"), "x": (2, "float"), "y": (3, "float"), "z": (4, "float")},
    "common.Vec3": {"x": (1, "float"), "y": (2, "float"), "z": (3, "float")},
    "common.Pose": {"vec": (1, "M:" + V), "quat": (2, "M:common.Quat")},
    "common.DynamicState": {
        "angular_velocity": (1, "M:" + V), "linear_velocity": (2, "M:" + V),
        "linear_acceleration": (3, "M:" + V), "angular_acceleration": (4, "M:" + V),
    },
    "common.AABB": {"size_x": (1, "float"), "size_y": (2, "float"), "size_z": (3, "float")},
    "common.PoseAtTime": {"pose": (1, P), "timestamp_us": (2, "fixed64")},
    "common.StateAtTime": {"timestamp_us": (1, "fixed64"), "pose": (2, P), "state": (3, "M:common.DynamicState")},
    "common.Trajectory": {"poses": (1, "M:common.PoseAtTime", "rep")},
    "common.VersionId": {"version_id": (1, "string"), "git_hash": (2, "string"),
                         "grpc_api_version": (3, "M:common.VersionId.APIVersion")},
    "common.VersionId.APIVersion": {"major": (1, "uint32"), "minor": (2, "uint32"), "patch": (3, "uint32")},
    "common.SessionRequestStatus": {},
    "common.AvailableScenesReturn": {"scene_ids": (1, "string", "rep")},
    # --- egodriver.proto (§2.2) ----------------------------------------------------------------
    "egodriver.Route": {"waypoints": (1, "M:" + V, "rep"), "timestamp_us": (2, "fixed64")},
    "egodriver.GroundTruth": {"trajectory": (1, T), "timestamp_us": (2, "fixed64")},
    "egodriver.DriveSessionRequest": {
        "session_uuid": (1, "string"), "random_seed": (2, "fixed64"),
        "debug_info": (4, "M:egodriver.DriveSessionRequest.DebugInfo", "opt"),
        "rollout_spec": (5, "M:egodriver.DriveSessionRequest.RolloutSpec"),
    },
    "egodriver.DriveSessionRequest.DebugInfo": {"scene_id": (1, "string")},
    "egodriver.DriveSessionRequest.RolloutSpec": {
        "vehicle": (1, "M:egodriver.DriveSessionRequest.RolloutSpec.VehicleDefinition")},
    "egodriver.DriveSessionRequest.RolloutSpec.VehicleDefinition": {
        "available_cameras": (3, "M:" + S + "AvailableCamerasReturn.AvailableCamera", "rep")},
    "egodriver.DriveSessionCloseRequest": {"session_uuid": (1, "string")},
    "egodriver.RolloutCameraImage": {"session_uuid": (1, "string"),
                                     "camera_image": (3, "M:egodriver.RolloutCameraImage.CameraImage")},
    "egodriver.RolloutCameraImage.CameraImage": {
        "frame_start_us": (2, "fixed64"), "frame_end_us": (3, "fixed64"), "image_bytes": (4, "bytes"),
        "logical_id": (5, "string")},
    "egodriver.RolloutEgoTrajectory": {"session_uuid": (1, "string"), "trajectory": (3, T),
                                       "dynamic_states": (5, "M:common.DynamicState", "rep")},
    "egodriver.RouteRequest": {"session_uuid": (1, "string"), "route": (3, "M:egodriver.Route")},
    "egodriver.GroundTruthRequest": {"session_uuid": (1, "string"), "ground_truth": (2, "M:egodriver.GroundTruth")},
    "egodriver.DriveRequest": {"session_uuid": (1, "string"), "time_now_us": (3, "fixed64"),
                               "time_query_us": (4, "fixed64"), "renderer_data": (5, "bytes")},
    "egodriver.DriveRequest.RolloutDriveRequest": {"time_now_us": (1, "fixed64"), "time_query_us": (2, "fixed64")},
    "egodriver.DriveResponse": {"trajectory": (2, T), "debug_info": (3, "M:egodriver.DriveResponse.DebugInfo"),
                                "terminate_session": (4, "bool")},
    "egodriver.DriveResponse.DebugInfo": {"unstructured_debug_info": (1, "bytes"),
                                          "sampled_trajectories": (2, T, "rep")},
    # --- sensorsim.proto (§2.3) ----------------------------------------------------------------
    S + "LoadedSceneEntry": {"scene_id": (1, "string"), "loaded_instance_count": (2, "uint64"),
                             "reusable_instance_count": (3, "uint64")},
    S + "LoadedScenesReturn": {"scenes": (1, "M:" + S + "LoadedSceneEntry", "rep"),
                               "loaded_instance_capacity": (2, "uint64")},
    S + "EgoMaskId": {"camera_logical_id": (1, "string"), "rig_config_id": (2, "string")},
    S + "AvailableEgoMasksReturn": {
        "ego_mask_metadata": (1, "M:" + S + "AvailableEgoMasksReturn.EgoMaskMetadata", "rep")},
    S + "AvailableEgoMasksReturn.EgoMaskMetadata": {"ego_mask_id": (1, "M:" + S + "EgoMaskId")},
    S + "LinearCde": {"linear_c": (1, "double"), "linear_d": (2, "double"), "linear_e": (3, "double")},
    S + "FthetaCameraParam": {
        "principal_point_x": (1, "double"), "principal_point_y": (2, "double"),
        "reference_poly": (3, "E:" + S + "FthetaCameraParam.PolynomialType"),
        "pixeldist_to_angle_poly": (4, "double", "rep"), "angle_to_pixeldist_poly": (5, "double", "rep"),
        "max_angle": (6, "double"), "linear_cde": (7, "M:" + S + "LinearCde")},
    S + "OpenCVPinholeCameraParam": {
        "principal_point_x": (1, "double"), "principal_point_y": (2, "double"),
        "focal_length_x": (3, "double"), "focal_length_y": (4, "double"),
        "radial_coeffs": (5, "double", "rep"), "tangential_coeffs": (6, "double", "rep"),
        "thin_prism_coeffs": (7, "double", "rep")},
    S + "OpenCVFisheyeCameraParam": {
        "principal_point_x": (1, "double"), "principal_point_y": (2, "double"),
        "focal_length_x": (3, "double"), "focal_length_y": (4, "double"),
        "radial_coeffs": (5, "double", "rep"), "max_angle": (6, "double")},
    S + "BivariateWindshieldModelParameters": {
        "reference_poly": (1, "E:" + S + "BivariateWindshieldModelParameters.ReferencePolynomial"),
        "horizontal_poly": (2, "double", "rep"), "vertical_poly": (3, "double", "rep"),
        "horizontal_poly_inverse": (4, "double", "rep"), "vertical_poly_inverse": (5, "double", "rep")},
    S + "CameraSpec": {
        "temporary_camera_spec": (1, "string"),
        "ftheta_param": (2, "M:" + S + "FthetaCameraParam", "oneof:camera_param"),
        "opencv_pinhole_param": (3, "M:" + S + "OpenCVPinholeCameraParam", "oneof:camera_param"),
        "opencv_fisheye_param": (4, "M:" + S + "OpenCVFisheyeCameraParam", "oneof:camera_param"),
        "logical_id": (5, "string"), "resolution_h": (7, "uint32"), "resolution_w": (8, "uint32"),
        "shutter_type": (9, "E:" + S + "ShutterType"),
        "bivariate_windshield_model_param": (10, "M:" + S + "BivariateWindshieldModelParameters",
                                             "oneof:external_distortion")},
    S + "PosePair": {"start_pose": (1, P), "end_pose": (2, P)},
    S + "DynamicObject": {"track_id": (1, "string"), "pose_pair": (2, "M:" + S + "PosePair")},
    S + "RGBRenderRequest": {
        "scene_id": (1, "string"), "resolution_h": (2, "uint32"), "resolution_w": (3, "uint32"),
        "camera_intrinsics": (4, "M:" + S + "CameraSpec"), "frame_start_us": (5, "fixed64"),
        "frame_end_us": (6, "fixed64"), "sensor_pose": (7, "M:" + S + "PosePair"),
        "dynamic_objects": (8, "M:" + S + "DynamicObject", "rep"), "image_format": (9, "E:" + S + "ImageFormat"),
        "image_quality": (10, "float"), "insert_ego_mask": (11, "bool"), "ego_mask_id": (12, "M:" + S + "EgoMaskId")},
    S + "AvailableCamerasRequest": {"scene_id": (1, "string")},
    S + "AvailableCamerasReturn": {
        "available_cameras": (1, "M:" + S + "AvailableCamerasReturn.AvailableCamera", "rep")},
    S + "AvailableCamerasReturn.AvailableCamera": {
        "intrinsics": (1, "M:" + S + "CameraSpec"), "rig_to_camera": (2, P), "logical_id": (3, "string")},
    S + "AvailableTrajectoriesRequest": {"scene_id": (1, "string")},
    S + "AvailableTrajectoriesReturn": {
        "available_trajectories": (1, "M:" + S + "AvailableTrajectoriesReturn.AvailableTrajectory", "rep")},
    S + "AvailableTrajectoriesReturn.AvailableTrajectory": {"trajectory": (2, T)},
    S + "RGBRenderReturn": {"image_bytes": (1, "bytes")},
    S + "LidarSpec": {"lidar_type": (2, "E:" + S + "LidarDeviceType")},
    S + "LidarRenderReturn": {
        "point_xyzs": (1, "float", "rep"), "point_intensities": (2, "float", "rep"), "num_points": (3, "uint32"),
        "point_xyzs_buffer": (4, "bytes"), "point_intensities_buffer": (5, "bytes")},
    S + "LidarRenderRequest": {
        "scene_id": (1, "string"), "lidar_config": (2, "M:" + S + "LidarSpec"), "frame_start_us": (3, "fixed64"),
        "frame_end_us": (4, "fixed64"), "sensor_pose": (5, "M:" + S + "PosePair"),
        "dynamic_objects": (6, "M:" + S + "DynamicObject", "rep")},
    S + "BatchRGBRenderRequest": {"items": (1, "M:" + S + "BatchRGBRenderRequestItem", "rep")},
    S + "BatchRGBRenderRequestItem": {"camera_name": (1, "string"), "request": (2, "M:" + S + "RGBRenderRequest")},
    S + "BatchRGBRenderReturn": {"items": (1, "M:" + S + "BatchRGBRenderReturnItem", "rep")},
    S + "BatchRGBRenderReturnItem": {"camera_name": (1, "string"), "result": (2, "M:" + S + "RGBRenderReturn"),
                                     "success": (3, "bool"), "error_message": (4, "string")},
    S + "AggregatedRenderRequest": {"rgb_requests": (1, "M:" + S + "RGBRenderRequest", "rep"),
                                    "lidar_requests": (2, "M:" + S + "LidarRenderRequest", "rep")},
    S + "AggregatedRenderReturn": {"rgb_returns": (1, "M:" + S + "RGBRenderReturn", "rep"),
                                   "lidar_returns": (2, "M:" + S + "LidarRenderReturn", "rep"),
                                   "driver_data": (3, "bytes")},
    # --- controller.proto (§2.4) ---------------------------------------------------------------
    "controller.VDCSessionRequest": {
        "session_uuid": (1, "string"),
        "vehicle_and_controller_params": (2, "M:controller.VDCSessionRequest.VehicleAndControllerParams")},
    "controller.VDCSessionRequest.VehicleAndControllerParams": {"rig_file": (1, "string"),
                                                                "amend_files": (2, "string", "rep")},
    "controller.VDCSessionCloseRequest": {"session_uuid": (1, "string")},
    "controller.RunControllerAndVehicleModelRequest": {
        "session_uuid": (1, "string"), "state": (2, "M:common.StateAtTime"), "planned_trajectory_in_rig": (3, T),
        "future_time_us": (4, "int64"), "coerce_dynamic_state": (5, "bool"),
        "pose_reporting_interval_us": (6, "int64")},
    "controller.RunControllerAndVehicleModelResponse": {
        "pose_local_to_rig": (1, "M:common.PoseAtTime"), "pose_local_to_rig_estimated": (2, "M:common.PoseAtTime"),
        "dynamic_state": (3, "M:common.DynamicState"), "dynamic_state_estimated": (4, "M:common.DynamicState"),
        "states": (6, "M:controller.RunControllerAndVehicleModelResponse.PropagatedState", "rep")},
    "controller.RunControllerAndVehicleModelResponse.PropagatedState": {
        "timestamp_us": (1, "fixed64"), "pose_local_to_rig": (2, P), "pose_local_to_rig_estimated": (3, P),
        "dynamic_state": (4, "M:common.DynamicState"), "dynamic_state_estimated": (5, "M:common.DynamicState")},
    # --- physics.proto (§2.5) ------------------------------------------------------------------
    "physics.PhysicsGroundIntersectionRequest": {
        "scene_id": (1, "string"), "now_us": (2, "fixed64"), "future_us": (3, "fixed64"),
        "ego_data": (4, "M:physics.PhysicsGroundIntersectionRequest.EgoData", "opt"),
        "other_objects": (5, "M:physics.PhysicsGroundIntersectionRequest.OtherObject", "rep")},
    "physics.PhysicsGroundIntersectionRequest.PosePair": {"now_pose": (1, P), "future_pose": (2, P)},
    "physics.PhysicsGroundIntersectionRequest.EgoData": {"aabb": (1, "M:common.AABB"), "ego_trajectory_aabb": (3, T)},
    "physics.PhysicsGroundIntersectionRequest.OtherObject": {
        "aabb": (1, "M:common.AABB"), "pose_pair": (2, "M:physics.PhysicsGroundIntersectionRequest.PosePair")},
    "physics.PhysicsGroundIntersectionReturn": {
        "other_poses": (2, "M:physics.PhysicsGroundIntersectionReturn.ReturnPose", "rep"),
        "ego_trajectory_aabb": (4, T),
        "ego_status": (5, "E:physics.PhysicsGroundIntersectionReturn.Status", "rep")},
    "physics.PhysicsGroundIntersectionReturn.ReturnPose": {
        "pose": (1, P), "status": (2, "E:physics.PhysicsGroundIntersectionReturn.Status")},
    # --- traffic.proto (§2.6) ------------------------------------------------------------------
    "traffic.ObjectTrajectory": {"aabb": (1, "M:common.AABB"), "trajectory": (2, T), "object_id": (3, "string"),
                                 "is_static": (4, "bool"), "label_class": (5, "string")},
    "traffic.ObjectTrajectoryUpdate": {"object_id": (1, "string"), "trajectory": (2, T)},
    "traffic.TrafficSessionRequest": {
        "session_uuid": (1, "string"), "scene_id": (2, "string"), "random_seed": (3, "fixed64"),
        "logged_object_trajectories": (4, "M:traffic.ObjectTrajectory", "rep"), "handover_time_us": (5, "fixed64")},
    "traffic.TrafficSessionCloseRequest": {"session_uuid": (1, "string")},
    "traffic.TrafficRequest": {"session_uuid": (1, "string"), "time_query_us": (2, "fixed64"),
                               "object_trajectory_updates": (3, "M:traffic.ObjectTrajectoryUpdate", "rep")},
    "traffic.TrafficReturn": {"object_trajectory_updates": (1, "M:traffic.ObjectTrajectoryUpdate", "rep")},
    "traffic.TrafficModuleMetadata": {"version_id": (1, "M:common.VersionId"),
                                      "minimum_history_length_us": (2, "fixed64")},
}

# --- video_model.proto (§2.9): no field table in the spec -> placeholder messages -----------------
for _name in ("SessionRequest", "SessionId", "SessionCloseRequest", "VideoChunkRequest", "VideoChunkReturn"):
    MESSAGES[f"omnidreams.video_model.{_name}"] = {}

# --- logging.proto (§2.8) ----------------------------------------------------------------------
_RM = "logging.RolloutMetadata."
MESSAGES.update({
    "logging.RolloutMetadata": {
        "session_metadata": (1, "M:" + _RM + "SessionMetadata"), "actor_definitions": (2, "M:" + _RM + "ActorDefinitions"),
        "force_gt_duration": (3, "fixed64"), "version_ids": (4, "M:" + _RM + "VersionIds"),
        "rollout_index": (5, "int32"), "transform_ego_coords_rig_to_aabb": (6, P),
        "ego_rig_recorded_ground_truth_trajectory": (7, T)},
    _RM + "VersionIds": {f"{s}_version": (i, "M:common.VersionId") for i, s in enumerate(
        ["runtime", "egodriver", "sensorsim", "physics", "traffic", "controller", "video_model"], start=1)},
    _RM + "SessionMetadata": {
        "session_uuid": (1, "string"), "scene_id": (2, "string"), "batch_size": (3, "uint32"),
        "n_sim_steps": (4, "uint32"), "start_timestamp_us": (5, "fixed64"), "control_timestep_us": (6, "fixed64"),
        "nre_runid": (7, "string"), "nre_version": (8, "string"), "nre_uuid": (9, "string"),
        "render_start_timestamp_us": (10, "fixed64")},
    _RM + "ActorDefinitions": {"actor_aabb": (1, "M:" + _RM + "ActorDefinitions.ActorAABB", "rep")},
    _RM + "ActorDefinitions.ActorAABB": {"actor_id": (1, "string"), "aabb": (2, "M:common.AABB"),
                                         "actor_label": (3, "string")},
    "logging.ActorPoses": {"timestamp_us": (1, "fixed64"),
                           "actor_poses": (2, "M:logging.ActorPoses.ActorPose", "rep")},
    "logging.ActorPoses.ActorPose": {"actor_id": (1, "string"), "actor_pose": (2, P)},
})

ENUMS: dict[str, dict[str, int]] = {
    S + "ShutterType": {"UNKNOWN": 0, "ROLLING_TOP_TO_BOTTOM": 1, "ROLLING_LEFT_TO_RIGHT": 2,
                        "ROLLING_BOTTOM_TO_TOP": 3, "ROLLING_RIGHT_TO_LEFT": 4, "GLOBAL": 5},
    S + "FthetaCameraParam.PolynomialType": {"UNKNOWN": 0, "PIXELDIST_TO_ANGLE": 1, "ANGLE_TO_PIXELDIST": 2},
    S + "BivariateWindshieldModelParameters.ReferencePolynomial": {"FORWARD": 0, "BACKWARD": 1},
    S + "ImageFormat": {"UNDEFINED": 0, "PNG": 1, "JPEG": 2, "JPEG2000": 3, "RGB_UINT8_PLANAR": 4, "AVC": 5, "AV1": 6},
    S + "LidarDeviceType": {"PANDAR128": 0, "AT128": 1},
    "physics.PhysicsGroundIntersectionReturn.Status": {
        "SUCCESSFUL_UPDATE": 0, "UNKNOWN": 1, "INSUFFICIENT_POINTS_FITPLANE": 2, "HIGH_TRANSLATION": 3,
        "HIGH_ROTATION": 4},
}

# logging.LogEntry oneof `log_entry` (§2.8): slot -> (field name, message full name); 27 is reserved.
LOG_ENTRY_SLOTS: dict[int, tuple[str, str]] = {
    1: ("rollout_metadata", "logging.RolloutMetadata"),
    2: ("actor_poses", "logging.ActorPoses"),
    3: ("render_request", S + "RGBRenderRequest"),
    4: ("driver_request", "egodriver.DriveRequest"),
    5: ("driver_return", "egodriver.DriveResponse"),
    6: ("traffic_request", "traffic.TrafficRequest"),
    7: ("traffic_return", "traffic.TrafficReturn"),
    8: ("physics_request", "physics.PhysicsGroundIntersectionRequest"),
    9: ("physics_return", "physics.PhysicsGroundIntersectionReturn"),
    10: ("driver_session_request", "egodriver.DriveSessionRequest"),
    11: ("driver_camera_image", "egodriver.RolloutCameraImage"),
    12: ("driver_ego_trajectory", "egodriver.RolloutEgoTrajectory"),
    13: ("traffic_session_request", "traffic.TrafficSessionRequest"),
    14: ("controller_request", "controller.RunControllerAndVehicleModelRequest"),
    15: ("controller_return", "controller.RunControllerAndVehicleModelResponse"),
    16: ("egomotion_estimate_error", "common.PoseAtTime"),
    17: ("route_request", "egodriver.RouteRequest"),
    18: ("ground_truth_request", "egodriver.GroundTruthRequest"),
    19: ("available_cameras_request", S + "AvailableCamerasRequest"),
    20: ("available_cameras_return", S + "AvailableCamerasReturn"),
    21: ("aggregated_render_request", S + "AggregatedRenderRequest"),
    22: ("available_ego_masks_request", "common.Empty"),
    23: ("available_ego_masks_return", S + "AvailableEgoMasksReturn"),
    24: ("video_model_session_request", "omnidreams.video_model.SessionRequest"),
    25: ("video_model_session_id", "omnidreams.video_model.SessionId"),
    26: ("video_model_session_close_request", "omnidreams.video_model.SessionCloseRequest"),
    28: ("video_model_chunk_request", "omnidreams.video_model.VideoChunkRequest"),
    29: ("video_model_chunk_return", "omnidreams.video_model.VideoChunkReturn"),
    30: ("batch_render_request", S + "BatchRGBRenderRequest"),
}

MESSAGES["logging.LogEntry"] = {name: (num, "M:" + typ, "oneof:log_entry")
                                for num, (name, typ) in LOG_ENTRY_SLOTS.items()}

E = "common.Empty"
VID = "common.VersionId"
# Services (§2.2–§2.7, §2.9): full name -> [(method, request, response)] in declaration order.
SERVICES: dict[str, list[tuple[str, str, str]]] = {
    "egodriver.EgodriverService": [
        ("start_session", "egodriver.DriveSessionRequest", "common.SessionRequestStatus"),
        ("close_session", "egodriver.DriveSessionCloseRequest", E),
        ("submit_image_observation", "egodriver.RolloutCameraImage", E),
        ("submit_egomotion_observation", "egodriver.RolloutEgoTrajectory", E),
        ("submit_route", "egodriver.RouteRequest", E),
        ("submit_recording_ground_truth", "egodriver.GroundTruthRequest", E),
        ("drive", "egodriver.DriveRequest", "egodriver.DriveResponse"),
        ("get_version", E, VID),
    ],
    S + "SensorsimService": [
        ("render_rgb", S + "RGBRenderRequest", S + "RGBRenderReturn"),
        ("render_lidar", S + "LidarRenderRequest", S + "LidarRenderReturn"),
        ("render_aggregated", S + "AggregatedRenderRequest", S + "AggregatedRenderReturn"),
        ("batch_render_rgb", S + "BatchRGBRenderRequest", S + "BatchRGBRenderReturn"),
        ("get_version", E, VID),
        ("get_available_scenes", E, "common.AvailableScenesReturn"),
        ("get_loaded_scenes", E, S + "LoadedScenesReturn"),
        ("get_available_cameras", S + "AvailableCamerasRequest", S + "AvailableCamerasReturn"),
        ("get_available_trajectories", S + "AvailableTrajectoriesRequest", S + "AvailableTrajectoriesReturn"),
        ("get_available_ego_masks", E, S + "AvailableEgoMasksReturn"),
    ],
    "controller.VDCService": [
        ("get_version", E, VID),
        ("start_session", "controller.VDCSessionRequest", "common.SessionRequestStatus"),
        ("close_session", "controller.VDCSessionCloseRequest", E),
        ("run_controller_and_vehicle", "controller.RunControllerAndVehicleModelRequest",
         "controller.RunControllerAndVehicleModelResponse"),
    ],
    "physics.PhysicsService": [
        ("ground_intersection", "physics.PhysicsGroundIntersectionRequest", "physics.PhysicsGroundIntersectionReturn"),
        ("get_version", E, VID),
        ("get_available_scenes", E, "common.AvailableScenesReturn"),
    ],
    "traffic.TrafficService": [
        ("start_session", "traffic.TrafficSessionRequest", "common.SessionRequestStatus"),
        ("close_session", "traffic.TrafficSessionCloseRequest", E),
        ("simulate", "traffic.TrafficRequest", "traffic.TrafficReturn"),
        ("get_metadata", E, "traffic.TrafficModuleMetadata"),
        ("get_available_scenes", E, "common.AvailableScenesReturn"),
    ],
    "RuntimeService": [
        ("simulate", "SimulationRequest", "SimulationReturn"),
        ("get_runtime_info", E, "RuntimeInfo"),
        ("shut_down", E, E),
    ],
    "omnidreams.video_model.WorldModelService": [
        ("start_session", "omnidreams.video_model.SessionRequest", "omnidreams.video_model.SessionId"),
        ("close_session", "omnidreams.video_model.SessionCloseRequest", E),
        ("render_video_chunk", "omnidreams.video_model.VideoChunkRequest", "omnidreams.video_model.VideoChunkReturn"),
        ("get_version", E, VID),
    ],
}


# ==================================================================================================
# Descriptors built independently from the table above
# ==================================================================================================

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from cordillera.serve import stubs

FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "double": FDP.TYPE_DOUBLE, "float": FDP.TYPE_FLOAT, "int64": FDP.TYPE_INT64, "uint64": FDP.TYPE_UINT64,
    "int32": FDP.TYPE_INT32, "fixed64": FDP.TYPE_FIXED64, "bool": FDP.TYPE_BOOL, "string": FDP.TYPE_STRING,
    "bytes": FDP.TYPE_BYTES, "uint32": FDP.TYPE_UINT32,
}
_TYPE_NAMES = {v: k for k, v in _SCALARS.items()} | {FDP.TYPE_MESSAGE: "message", FDP.TYPE_ENUM: "enum"}


def _spec(field: tuple) -> tuple[int, str, str]:
    number, typ = field[0], field[1]
    return number, typ, (field[2] if len(field) > 2 else "")


def _file_of(full_name: str) -> str:
    for f, (pkg, _) in FILES.items():
        if full_name.startswith(pkg + "."):
            return f
    raise KeyError(full_name)


def _relative_path(full_name: str) -> list[str]:
    return full_name[len(FILES[_file_of(full_name)][0]) + 1:].split(".")


def table_file_protos() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """One FileDescriptorProto per proto file, from MESSAGES / ENUMS only."""
    fdps = {}
    for f, (pkg, deps) in FILES.items():
        fdp = descriptor_pb2.FileDescriptorProto(name=f"alpasim_grpc/v0/{f}.proto", package=pkg, syntax="proto3")
        fdp.dependency.extend(f"alpasim_grpc/v0/{d}.proto" for d in deps)
        fdps[f] = fdp
    containers: dict[str, descriptor_pb2.DescriptorProto] = {}

    def container(full_name: str):
        """The DescriptorProto that holds a nested type named full_name (file-level → None)."""
        parent = full_name.rsplit(".", 1)[0]
        return containers.get(parent)

    for name in sorted(MESSAGES, key=lambda n: len(_relative_path(n))):  # parents before children
        parent = container(name)
        dp = (parent.nested_type if parent is not None else fdps[_file_of(name)].message_type).add()
        dp.name = name.rsplit(".", 1)[1]
        containers[name] = dp
    for name, values in ENUMS.items():
        parent = container(name)
        ep = (parent.enum_type if parent is not None else fdps[_file_of(name)].enum_type).add()
        ep.name = name.rsplit(".", 1)[1]
        for vname, vnum in values.items():
            ep.value.add(name=vname, number=vnum)
    for name, fields in MESSAGES.items():
        dp = containers[name]
        if name == "logging.LogEntry":
            dp.reserved_range.add(start=27, end=28)
        real_oneofs = sorted({_spec(f)[2][6:] for f in fields.values() if _spec(f)[2].startswith("oneof:")})
        for o in real_oneofs:
            dp.oneof_decl.add(name=o)
        for fname, f in sorted(fields.items(), key=lambda kv: kv[1][0]):
            number, typ, flag = _spec(f)
            fp = dp.field.add(name=fname, number=number, json_name=_json_name(fname))
            fp.label = FDP.LABEL_REPEATED if flag == "rep" else FDP.LABEL_OPTIONAL
            if typ.startswith("M:"):
                fp.type, fp.type_name = FDP.TYPE_MESSAGE, "." + typ[2:]
            elif typ.startswith("E:"):
                fp.type, fp.type_name = FDP.TYPE_ENUM, "." + typ[2:]
            else:
                fp.type = _SCALARS[typ]
            if flag.startswith("oneof:"):
                fp.oneof_index = real_oneofs.index(flag[6:])
        for fp in dp.field:  # synthetic oneofs of proto3 `optional` come after the real ones
            if _spec(fields[fp.name])[2] == "opt":
                fp.proto3_optional = True
                fp.oneof_index = len(dp.oneof_decl)
                dp.oneof_decl.add(name="_" + fp.name)
    return fdps


def _json_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def table_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()  # NOT the default pool our stubs live in
    fdps = table_file_protos()
    for f in FILES:  # FILES is in dependency order
        pool.Add(fdps[f])
    return pool


def table_class(pool, full_name: str):
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


# -- normalised view of a FileDescriptorProto, for field-by-field comparison ---------------------
def _walk(prefix: str, dp, out_msgs: dict, out_enums: dict) -> None:
    full = f"{prefix}.{dp.name}" if prefix else dp.name
    fields = {}
    for fp in dp.field:
        oneof = dp.oneof_decl[fp.oneof_index].name if fp.HasField("oneof_index") else None
        fields[fp.name] = {
            "number": fp.number, "type": _TYPE_NAMES[fp.type], "label": FDP.Label.Name(fp.label),
            "type_name": fp.type_name.lstrip(".") or None, "oneof": oneof, "proto3_optional": fp.proto3_optional,
        }
    out_msgs[full] = fields
    for e in dp.enum_type:
        out_enums[f"{full}.{e.name}"] = {v.name: v.number for v in e.value}
    for nested in dp.nested_type:
        _walk(full, nested, out_msgs, out_enums)


def normalise(fdp: descriptor_pb2.FileDescriptorProto) -> tuple[dict, dict]:
    msgs, enums = {}, {}
    for dp in fdp.message_type:
        _walk(fdp.package, dp, msgs, enums)
    for e in fdp.enum_type:
        enums[f"{fdp.package}.{e.name}" if fdp.package else e.name] = {v.name: v.number for v in e.value}
    return msgs, enums


def generated_fdp(f: str) -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto.FromString(stubs.pb2(f).DESCRIPTOR.serialized_pb)


def descriptor_diff(ours: descriptor_pb2.FileDescriptorProto, table: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """Human-readable differences (empty list = identical wire contract)."""
    (om, oe), (tm, te) = normalise(ours), normalise(table)
    diffs = []
    if ours.package != table.package:
        diffs.append(f"package {ours.package!r} != {table.package!r}")
    for name in sorted(set(om) | set(tm)):
        if name not in om or name not in tm:
            diffs.append(f"message {name}: only in {'generated' if name in om else 'table'}")
            continue
        for fname in sorted(set(om[name]) | set(tm[name])):
            a, b = om[name].get(fname), tm[name].get(fname)
            if a != b:
                diffs.append(f"{name}.{fname}: generated {a} != table {b}")
    for name in sorted(set(oe) | set(te)):
        if oe.get(name) != te.get(name):
            diffs.append(f"enum {name}: generated {oe.get(name)} != table {te.get(name)}")
    return diffs


# -- filling and reading messages through the table ---------------------------------------------
def _scalar_value(typ: str, k: int):
    k = k % 100_003  # k grows 37x per nesting level; keep every type in range
    return {
        "double": -(k + 1 / 3), "float": k + 0.25,  # float32-exact
        "int64": -(k * 10**12 + 7), "int32": -k, "uint32": 2**32 - 1 - k, "uint64": 2**64 - 1 - k,
        "fixed64": 2**63 + 1_689_697_803_493_732 + k,  # above int64 max: catches signedness slips
        "bool": True, "string": f"s{k}-ñ✓", "bytes": bytes([k % 256, 0, 255, 10]),
    }[typ]


def _enum_value(typ: str, k: int) -> int:
    values = sorted(ENUMS[typ[2:]].values())
    return values[1 + k % (len(values) - 1)]  # never the zero default


def _chosen_oneof_members(fields: dict, variant: int) -> set[str]:
    groups: dict[str, list[str]] = {}
    for fname, f in sorted(fields.items(), key=lambda kv: kv[1][0]):
        flag = _spec(f)[2]
        if flag.startswith("oneof:"):
            groups.setdefault(flag, []).append(fname)
    return {members[variant % len(members)] for members in groups.values()}


def n_variants(full_name: str) -> int:
    sizes = [1]
    for f in MESSAGES[full_name].values():
        flag = _spec(f)[2]
        if flag.startswith("oneof:"):
            sizes.append(sum(_spec(g)[2] == flag for g in MESSAGES[full_name].values()))
    return max(sizes)


def fill(msg, full_name: str, k: int = 1, variant: int = 0) -> None:
    """Set every field the table lists (one member per oneof) to a non-default value."""
    fields = MESSAGES[full_name]
    chosen = _chosen_oneof_members(fields, variant)
    for fname, f in fields.items():
        number, typ, flag = _spec(f)
        if flag.startswith("oneof:") and fname not in chosen:
            continue
        kk = k * 37 + number
        if typ.startswith("M:"):
            if flag == "rep":
                for j in range(2):
                    fill(getattr(msg, fname).add(), typ[2:], kk + j)
            else:
                sub = getattr(msg, fname)
                sub.SetInParent()  # marks presence even for empty messages
                fill(sub, typ[2:], kk)
        elif typ.startswith("E:"):
            if flag == "rep":
                getattr(msg, fname).extend([_enum_value(typ, kk), _enum_value(typ, kk + 1)])
            else:
                setattr(msg, fname, _enum_value(typ, kk))
        elif flag == "rep":
            getattr(msg, fname).extend([_scalar_value(typ, kk), _scalar_value(typ, kk + 1)])
        else:
            setattr(msg, fname, _scalar_value(typ, kk))


def plain(msg, full_name: str) -> dict:
    """Read every table field (by name) into plain python values, recursively."""
    out = {}
    fields = MESSAGES[full_name]
    for fname, f in fields.items():
        _, typ, flag = _spec(f)
        value = getattr(msg, fname)
        if typ.startswith("M:"):
            if flag == "rep":
                out[fname] = [plain(v, typ[2:]) for v in value]
            else:
                out[fname] = plain(value, typ[2:]) if msg.HasField(fname) else None
        elif flag == "rep":
            out[fname] = list(value)
        else:
            out[fname] = value
    for oneof in {_spec(f)[2][6:] for f in fields.values() if _spec(f)[2].startswith("oneof:")}:
        out[f"<oneof {oneof}>"] = msg.WhichOneof(oneof)
    return out


TABLE_POOL = table_pool()
WIRE_MESSAGES = sorted(n for n in MESSAGES)
CASES = [(n, v) for n in WIRE_MESSAGES for v in range(n_variants(n))]


def _ours(full_name: str):
    f = _file_of(full_name)
    cls = stubs.pb2(f)
    for part in _relative_path(full_name):
        cls = getattr(cls, part)
    return cls


# ==================================================================================================
# Tests
# ==================================================================================================
@pytest.mark.parametrize("proto", list(FILES))
def test_generated_descriptors_equal_table_field_by_field(proto):
    diffs = descriptor_diff(generated_fdp(proto), table_file_protos()[proto])
    assert not diffs, "\n".join(diffs)


@pytest.mark.parametrize("proto", list(FILES))
def test_generated_file_names_and_imports_are_alpasims(proto):
    fdp = generated_fdp(proto)
    assert fdp.name == f"alpasim_grpc/v0/{proto}.proto"
    assert fdp.syntax == "proto3"
    assert set(fdp.dependency) == {f"alpasim_grpc/v0/{d}.proto" for d in FILES[proto][1]}


def test_table_covers_every_generated_message_of_the_wire_files():
    generated = set()
    for f in FILES:
        generated |= set(normalise(generated_fdp(f))[0])
    assert generated == set(MESSAGES)


@pytest.mark.parametrize("full_name,variant", CASES, ids=[f"{n}#{v}" for n, v in CASES])
def test_wire_round_trip_ours_to_independent_and_back(full_name, variant):
    ours_cls, theirs_cls = _ours(full_name), table_class(TABLE_POOL, full_name)
    assert ours_cls.DESCRIPTOR.full_name == theirs_cls.DESCRIPTOR.full_name == full_name

    ours = ours_cls()
    fill(ours, full_name, variant=variant)
    wire = ours.SerializeToString(deterministic=True)
    theirs = theirs_cls.FromString(wire)
    assert plain(theirs, full_name) == plain(ours, full_name)
    assert theirs.SerializeToString(deterministic=True) == wire  # nothing landed in unknown fields

    theirs2 = theirs_cls()
    fill(theirs2, full_name, k=5, variant=variant)
    wire2 = theirs2.SerializeToString(deterministic=True)
    ours2 = ours_cls.FromString(wire2)
    assert plain(ours2, full_name) == plain(theirs2, full_name)
    assert ours2.SerializeToString(deterministic=True) == wire2


def test_fixed64_timestamps_are_fixed_width_on_the_wire():
    # field 3, wire type 1 (I64) -> tag 0x19, then 8 little-endian bytes.
    wire = stubs.egodriver_pb2.DriveRequest(time_now_us=1).SerializeToString()
    assert wire == bytes([0x19, 1, 0, 0, 0, 0, 0, 0, 0])
    # controller.future_time_us is int64 (varint, wire type 0): tag 0x20, then -1 as 10-byte varint.
    wire = stubs.controller_pb2.RunControllerAndVehicleModelRequest(future_time_us=-1).SerializeToString()
    assert wire[0] == 0x20 and len(wire) == 11


def test_quat_field_order_is_w_x_y_z_on_the_wire():
    wire = stubs.common_pb2.Quat(w=1.0).SerializeToString()
    assert wire[0] == (1 << 3) | 5  # field 1, wire type 5 (fixed32 float)


def test_renumbered_field_is_caught_by_both_checks():
    """The checks above are not vacuous: renumber Quat.w <-> Quat.x in a copy of the table."""
    quat = MESSAGES["common.Quat"]
    MESSAGES["common.Quat"] = {**quat, "w": (2, "float"), "x": (1, "float")}
    try:
        diffs = descriptor_diff(generated_fdp("common"), table_file_protos()["common"])
        assert any("common.Quat.w" in d for d in diffs) and any("common.Quat.x" in d for d in diffs)
        theirs_cls = table_class(table_pool(), "common.Quat")
        ours = stubs.common_pb2.Quat(w=1.0, x=2.0, y=3.0, z=4.0)
        theirs = theirs_cls.FromString(ours.SerializeToString())
        assert (theirs.w, theirs.x) == (2.0, 1.0)
    finally:
        MESSAGES["common.Quat"] = quat


def test_log_entry_has_all_30_slots_with_27_reserved():
    d = stubs.logging_pb2.LogEntry.DESCRIPTOR
    oneof = d.oneofs_by_name["log_entry"]
    got = {f.number: (f.name, f.message_type.full_name) for f in oneof.fields}
    assert got == LOG_ENTRY_SLOTS
    assert set(got) | {27} == set(range(1, 31))
    fdp = descriptor_pb2.DescriptorProto()
    d.CopyToProto(fdp)
    assert [(r.start, r.end) for r in fdp.reserved_range] == [(27, 28)]


def test_services_and_methods_match_spec():
    found = {}
    for name in stubs.SERVICE_PROTO_NAMES:
        for sname, sd in stubs.pb2(name).DESCRIPTOR.services_by_name.items():
            found[sd.full_name] = [(m.name, m.input_type.full_name, m.output_type.full_name) for m in sd.methods]
    assert found == SERVICES
    assert len(found) == 7
    # gRPC paths are /<full service name>/<method>
    stub_cls = stubs.egodriver_pb2_grpc.EgodriverServiceStub
    assert stub_cls.__name__ == "EgodriverServiceStub"
    assert stubs.runtime_pb2.DESCRIPTOR.package == ""
