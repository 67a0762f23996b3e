"""LLM teacher against a local fake OpenAI-compatible server (no network)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from cordillera.reasoning.teacher import (
    FRAME_OFFSETS_US,
    LlmTeacher,
    SchemaError,
    build_messages,
    sample_frame_times,
    validate_answer,
)


def _answer(cot, lon, lat, d=None, comps=("red traffic light",)):
    return json.dumps({"ego_behavior_schema": {"effect_on_ego_behavior": cot, "longitudinal_decision": lon,
                                               "lateral_decision": lat, "lateral_direction": d,
                                               "critical_components": list(comps)}})


class FakeServer:
    """Serves queued chat-completion contents and records the requests."""

    def __init__(self, contents, status=200):
        self.contents = list(contents)
        self.requests = []
        self.status = status
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if outer.status != 200:
                    self.send_response(outer.status)
                    self.end_headers()
                    self.wfile.write(b'{"error": "overloaded"}')
                    return
                content = outer.contents.pop(0) if outer.contents else "{}"
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.httpd.shutdown()
        self.httpd.server_close()


def _messages():
    img = np.zeros((24, 32, 3), dtype=np.uint8)
    img[:, :, 0] = 200
    frames = [(off, img) for off in FRAME_OFFSETS_US]
    metas = [(off, {"longitudinal": "gentle_deceleration", "lane": "keep_lane"}) for off in FRAME_OFFSETS_US]
    speeds = [(off, 10.0 - off / 1e6, 0.0) for off in FRAME_OFFSETS_US]
    return build_messages(frames, metas, speeds)


def test_prompt_structure():
    msgs = _messages()
    assert msgs[0]["role"] == "system" and "structured JSON" in msgs[0]["content"]
    user = msgs[1]["content"]
    images = [c for c in user if c["type"] == "image_url"]
    assert len(images) == 16  # 4 history + 12 future at 2 Hz (spec §6.3)
    assert images[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert images[0]["image_url"]["detail"] == "high"
    texts = "\n".join(c["text"] for c in user if c["type"] == "text")
    assert "4 before the event time" in texts and "2 Hz" in texts
    assert "(t=-2.0s) longitudinal: gentle_deceleration, lateral: Not Available, lane: keep_lane" in texts
    assert "(t=+5.5s) longitudinal: 4.50 m/s" in texts
    assert "Gap-search" in texts and "Keep Lane" in texts


def test_frame_sampling_at_or_before():
    t = np.arange(0, 20_000_000, 33_333)  # 30 fps
    picks = sample_frame_times(t, 5_000_000)
    assert len(picks) == 16
    for off, i in picks:
        assert t[i] <= 5_000_000 + off < t[i] + 33_333
    assert len(sample_frame_times(t, 1_000_000)) == 14  # −2.0 s and −1.5 s fall before the clip


def test_teacher_calls_endpoint_and_retries_on_schema_errors():
    good = _answer("Stop at the stop line since the light is red", "Stop", "Keep Lane")
    contents = ["not json", _answer("Turn left now", "Stop", "Turn", None), good]
    with FakeServer(contents) as srv:
        teacher = LlmTeacher(srv.url, "qwen3.5_35b", api_key="sk-test", max_attempts=3)
        ans = teacher.label(_messages())
    assert ans.attempts == 3 and len(ans.errors) == 2
    assert "not valid JSON" in ans.errors[0] and "lateral_direction" in ans.errors[1]
    assert ans.cot == "Stop at the stop line since the light is red"
    assert ans.record.decisions == ("Stop", "Keep Lane", None)
    assert [s.colour for s in ans.record.signals] == ["red"]
    req = srv.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    body = req["body"]
    assert body["model"] == "qwen3.5_35b" and body["temperature"] == 0.0
    schema = body["response_format"]["json_schema"]["schema"]
    assert "effect_on_ego_behavior" in schema["properties"]["ego_behavior_schema"]["properties"]
    # each retry carries the previous answer and the validation error
    assert len(srv.requests[2]["body"]["messages"]) == len(req["body"]["messages"]) + 4
    assert "did not follow the schema" in srv.requests[1]["body"]["messages"][-1]["content"]


def test_teacher_gives_up_after_bounded_attempts():
    with FakeServer(["{}", "{}", "{}", "{}"]) as srv:
        with pytest.raises(SchemaError, match="after 2 attempts"):
            LlmTeacher(srv.url + "/chat/completions", "m", max_attempts=2).label(_messages())
        assert len(srv.requests) == 2


def test_teacher_http_error_is_reported():
    with FakeServer([], status=503) as srv:
        with pytest.raises(RuntimeError, match="HTTP 503"):
            LlmTeacher(srv.url, "m").label(_messages())


@pytest.mark.parametrize("content,msg", [
    (json.dumps({"ego_behavior_schema": {"effect_on_ego_behavior": ""}}), "non-empty"),
    (_answer("Stop now", "Brake", "Keep Lane"), "longitudinal_decision"),
    (_answer("Stop since the light is red", "Yield", "Keep Lane"), "sentence says 'Stop'"),
    (_answer("Lane change to the left", "Resume Speed", "Lane Change", "right"), "sentence says"),
    (_answer("Hmm", None, None), "at least one"),
])
def test_validate_answer_rejects(content, msg):
    with pytest.raises(SchemaError, match=msg):
        validate_answer(content)


def test_bad_config():
    with pytest.raises(ValueError, match="http"):
        LlmTeacher("ftp://x", "m")
    with pytest.raises(ValueError, match="max_attempts"):
        LlmTeacher("http://x", "m", max_attempts=0)
