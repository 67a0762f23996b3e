"""LLM-teacher labeler for real data: any OpenAI-compatible chat-completions endpoint.

The prompt follows the released autolabeler's message sequence (spec/alpamayo_training_data.md
§6.3): system (agent + "structured JSON"), the 2 Hz front-camera video (4 history frames at
−2.0 … −0.5 s and 12 at 0 … +5.5 s), the meta-action hint and per-sample meta-actions, the
ego-speed series, and the task (decision list, priority rules, output spec). The answer schema is
the released ``{"ego_behavior_schema": {"effect_on_ego_behavior": str}}`` (§6.5) plus our
structured decision fields inside ``ego_behavior_schema``; answers are validated and the request
is retried (bounded) with the validation error appended when they do not fit.

Stdlib only (``urllib``): no client dependency. Future-cause leakage is controlled here only by
instruction, as in the release (§6.4) — the privileged rule labeler is the leak-proof one.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import numpy as np

from cordillera.reasoning.schema import DIRECTED_LATERAL, DIRECTIONS, LATERAL, LONGITUDINAL, CocRecord, parse

FRAME_PERIOD_US = 500_000  # [µs] 2 Hz, spec §6.3
HISTORY_OFFSETS_US = tuple(range(-2_000_000, 0, FRAME_PERIOD_US))  # −2.0 … −0.5 s (4 frames)
FUTURE_OFFSETS_US = tuple(range(0, 6_000_000, FRAME_PERIOD_US))  # 0 … +5.5 s (12 frames)
FRAME_OFFSETS_US = HISTORY_OFFSETS_US + FUTURE_OFFSETS_US  # 16 frames, spec §6.3
FRONT_CAMERA = "camera_front_wide_120fov"  # spec §6.3

SYSTEM_PROMPT = (
    "You are an expert driving-behaviour analyst. You explain the ego vehicle's driving decision at "
    "the event time t=0.0s as one chain-of-causation sentence. Output structured JSON following the "
    "schema strictly."
)
META_ACTION_HINT = (
    "Meta-actions below were computed from the ego motion. Lane priors (lane change, shift, turn) are "
    "high-value but not always correct; check longitudinal gap-search patterns around lane changes."
)
EGO_STATE_HINT = "Ego state: positive lateral speed means moving rightward."
TASK_PROMPT = """Task: describe the ego vehicle's decision at t=0.0s and its cause.
Decisions (choose at most one of each):
- Longitudinal: Stop (stop/hold at a line or control point, or behind a stopped lead vehicle); Yield (give way to pedestrians, cyclists, cross or priority traffic); Pass/Overtake (accelerate to overtake a moving vehicle, never a parked one); Gap-search (adjust speed to fit a planned lane change or merge); Keep Distance (follow the lead vehicle at a safe distance); Adapt Speed (slow for a curve, turn, ramp, speed bump or lower limit); Resume Speed (return to or keep the set speed; lowest priority).
- Lateral: Lane Change (left/right; always mention it); Nudge (left/right; small temporary shift for clearance); Turn (left/right at an intersection); Merge (from a ramp into the mainline); Split (from the mainline to an exit); Keep Lane (fallback).
Stop-cause priority: a lead vehicle in the ego lane or a yellow/red light first, then crossing traffic, then other controls.
Always mention: a cut-in vehicle with its direction, construction (cones, zone, workers), a curvy road, a speed bump, the traffic-light colour and the intersection when a light is mentioned.
Use the video up to about 2 s after t=0.0s to identify the causes; use the whole video to deduce the decision. Do not write 'potential', 'possible' or 'likely', and do not chain actions with 'then'.
Output: one sentence, a verb phrase with short reasoning, e.g. "Stop at the stop line since the light is red" or "Nudge left to clear the cones on the right shoulder and slow down in the construction zone"."""


def answer_schema() -> dict:
    """JSON schema of the answer: the released field plus our structured decision fields."""
    return {
        "type": "object",
        "properties": {
            "ego_behavior_schema": {
                "type": "object",
                "properties": {
                    "effect_on_ego_behavior": {"type": "string"},
                    "longitudinal_decision": {"type": ["string", "null"], "enum": [*LONGITUDINAL, None]},
                    "lateral_decision": {"type": ["string", "null"], "enum": [*LATERAL, None]},
                    "lateral_direction": {"type": ["string", "null"], "enum": [*DIRECTIONS, None]},
                    "critical_components": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["effect_on_ego_behavior", "longitudinal_decision", "lateral_decision",
                             "lateral_direction", "critical_components"],
                "additionalProperties": False,
            }
        },
        "required": ["ego_behavior_schema"],
        "additionalProperties": False,
    }


class SchemaError(ValueError):
    """The teacher's answer does not fit the schema (retried)."""


@dataclass(frozen=True)
class TeacherAnswer:
    cot: str
    record: CocRecord
    critical_components: tuple[str, ...]
    raw: dict
    attempts: int
    errors: tuple[str, ...] = field(default_factory=tuple)


# ----------------------------------------------------------------------------------------------
# Prompt
# ----------------------------------------------------------------------------------------------
def sample_frame_times(frame_t_us, t0_us: int) -> list[tuple[int, int]]:
    """[(offset_us, index)] for the 16 prompt frames: for each offset the frame at or before
    ``t0 + offset`` (as the released decoder does); offsets before the first frame are skipped."""
    t = np.asarray(frame_t_us, dtype=np.int64)
    if t.ndim != 1 or len(t) == 0 or np.any(np.diff(t) <= 0):
        raise ValueError("frame times must be a non-empty strictly increasing 1-D array")
    out = []
    for off in FRAME_OFFSETS_US:
        i = int(np.searchsorted(t, t0_us + off, side="right")) - 1
        if i >= 0:
            out.append((off, i))
    return out


def encode_jpeg_data_url(image: np.ndarray | bytes, quality: int = 85) -> str:
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
    else:
        import cv2

        img = np.asarray(image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"frames must be HxWx3 uint8 RGB, got {img.dtype} {img.shape}")
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        data = buf.tobytes()
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def build_messages(frames: list[tuple[int, np.ndarray | bytes]], meta_actions: list[tuple[int, dict]],
                   speeds: list[tuple[int, float, float]]) -> list[dict]:
    """Chat messages for one keyframe.

    ``frames``: [(offset_us from t0, image)] front-camera frames at 2 Hz; ``meta_actions``:
    [(offset_us, {"longitudinal": label, "lane": label})]; ``speeds``: [(offset_us, lon_mps,
    lat_mps)] (lateral positive = rightward, as the released prompt)."""
    if not frames:
        raise ValueError("the teacher needs at least one front-camera frame")
    n_hist = sum(1 for off, _ in frames if off < 0)
    video = [{"type": "image_url", "image_url": {"url": encode_jpeg_data_url(img), "detail": "high"}}
             for _, img in frames]
    ma_lines = "\n".join(
        f"(t={off / 1e6:+.1f}s) longitudinal: {m.get('longitudinal', 'Not Available')}, lateral: Not Available, "
        f"lane: {m.get('lane', 'Not Available')}" for off, m in meta_actions)
    sp_lines = "\n".join(f"(t={off / 1e6:+.1f}s) longitudinal: {v:.2f} m/s, lateral: {w:.2f} m/s" for off, v, w in speeds)
    user = [
        {"type": "text", "text": (f"The following are front-view image frames at 2 Hz: {len(frames)} frames, "
                                  f"{n_hist} before the event time t=0.0s and {len(frames) - n_hist} from t=0.0s on "
                                  "(8 s video: 2 s history + 6 s future).")},
        *video,
        {"type": "text", "text": META_ACTION_HINT},
        {"type": "text", "text": ma_lines or "(no meta-actions)"},
        {"type": "text", "text": EGO_STATE_HINT},
        {"type": "text", "text": "Ego speed time series (relative to event time t=0.0s):\n" + (sp_lines or "(none)")},
        {"type": "text", "text": TASK_PROMPT},
    ]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------
def validate_answer(content: str) -> tuple[str, CocRecord, tuple[str, ...], dict]:
    """Parse and check one answer; raise ``SchemaError`` saying what is wrong."""
    try:
        obj = json.loads(content)
    except (json.JSONDecodeError, TypeError) as e:
        raise SchemaError(f"answer is not valid JSON: {e}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("ego_behavior_schema"), dict):
        raise SchemaError("answer must be an object with an 'ego_behavior_schema' object")
    e = obj["ego_behavior_schema"]
    cot = e.get("effect_on_ego_behavior")
    if not isinstance(cot, str) or not cot.strip():
        raise SchemaError("'effect_on_ego_behavior' must be a non-empty string")
    lon, lat, d = e.get("longitudinal_decision"), e.get("lateral_decision"), e.get("lateral_direction")
    if lon is not None and lon not in LONGITUDINAL:
        raise SchemaError(f"'longitudinal_decision' must be one of {LONGITUDINAL} or null, got {lon!r}")
    if lat is not None and lat not in LATERAL:
        raise SchemaError(f"'lateral_decision' must be one of {LATERAL} or null, got {lat!r}")
    if d is not None and d not in DIRECTIONS:
        raise SchemaError(f"'lateral_direction' must be left/right or null, got {d!r}")
    if lat in DIRECTED_LATERAL and d is None:
        raise SchemaError(f"lateral decision {lat!r} needs 'lateral_direction'")
    if lon is None and lat is None:
        raise SchemaError("at least one of longitudinal_decision / lateral_decision is required")
    comps = e.get("critical_components", [])
    if not isinstance(comps, list) or not all(isinstance(c, str) for c in comps):
        raise SchemaError("'critical_components' must be a list of strings")
    said = parse(cot)
    if said.longitudinal is not None and lon is not None and said.longitudinal != lon:
        raise SchemaError(f"the sentence says {said.longitudinal!r} but longitudinal_decision is {lon!r}")
    if said.lateral is not None and lat is not None and (said.lateral, said.lateral_direction) != (lat, d if lat in DIRECTED_LATERAL else said.lateral_direction):
        raise SchemaError(f"the sentence says {said.lateral!r} {said.lateral_direction or ''} but lateral_decision is {lat!r} {d or ''}")
    rec = said.with_(longitudinal=lon, lateral=lat, lateral_direction=d if lat in DIRECTED_LATERAL + ("Merge", "Split") else None)
    return cot.strip(), rec, tuple(comps), obj


# ----------------------------------------------------------------------------------------------
# Client
# ----------------------------------------------------------------------------------------------
@dataclass
class LlmTeacher:
    """``url``: the API base (``http://host:port/v1``) or the full ``…/chat/completions`` URL."""

    url: str
    model: str
    api_key: str | None = None
    max_attempts: int = 3
    timeout_s: float = 120.0
    temperature: float = 0.0  # spec §6.3: temperature 0, top_p 1
    extra_body: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"teacher url must be http(s), got {self.url!r}")

    @property
    def endpoint(self) -> str:
        u = self.url.rstrip("/")
        return u if u.endswith("/chat/completions") else u + "/chat/completions"

    def _post(self, body: dict) -> dict:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:300]
            raise RuntimeError(f"teacher endpoint {self.endpoint} answered HTTP {e.code}: {detail}") from None
        except urllib.error.URLError as e:
            raise RuntimeError(f"teacher endpoint {self.endpoint} unreachable: {e.reason}") from None

    def label(self, messages: list[dict]) -> TeacherAnswer:
        """Ask the teacher; retry with the validation error when the answer breaks the schema."""
        msgs = list(messages)
        errors: list[str] = []
        for attempt in range(1, self.max_attempts + 1):
            body = {
                "model": self.model,
                "messages": msgs,
                "temperature": self.temperature,
                "top_p": 1.0,
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "OutputSchema", "schema": answer_schema(), "strict": True}},
                **self.extra_body,
            }
            resp = self._post(body)
            try:
                content = resp["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                content = None
            try:
                if not isinstance(content, str):
                    raise SchemaError("response has no choices[0].message.content string")
                cot, rec, comps, raw = validate_answer(content)
                return TeacherAnswer(cot, rec, comps, raw, attempt, tuple(errors))
            except SchemaError as e:
                errors.append(str(e))
                msgs = msgs + [
                    {"role": "assistant", "content": content if isinstance(content, str) else ""},
                    {"role": "user", "content": f"Your answer did not follow the schema: {e}. Answer again with "
                                                "JSON that follows the schema strictly."},
                ]
        raise SchemaError(f"teacher answer invalid after {self.max_attempts} attempts: " + " | ".join(errors))


__all__ = [
    "FRAME_OFFSETS_US", "FRONT_CAMERA", "answer_schema", "SchemaError", "TeacherAnswer", "sample_frame_times",
    "encode_jpeg_data_url", "build_messages", "validate_answer", "LlmTeacher",
]
