"""The provider simulator and the harness itself, checked through the real SDKs.

These do not involve the gateway: they prove the simulator speaks each provider's wire
format well enough for the official clients, so a failure in the gateway tests is the
gateway's, and that the harness parsers (access log, rotel spans) read what they claim.
"""

from __future__ import annotations

import time

import anthropic
import openai
import pytest
import requests

from conftest import parse_log_line

REPLY = "Hello from the simulator. You said: "

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


@pytest.fixture
def oa(sim):
    return openai.OpenAI(base_url=f"{sim}/v1", api_key="sk-direct", max_retries=0)


@pytest.fixture
def an(sim):
    return anthropic.Anthropic(base_url=str(sim), api_key="sk-ant-direct", max_retries=0)


def test_openai_chat_and_usage(sim, oa):
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi there"}])
    assert r.choices[0].message.content == REPLY + "hi there"
    assert r.model == "gpt-4o-mini-sim-2024"
    # 2 words + 3 per message; reply has 8 words.
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 8, 13)
    [rec] = sim.requests("openai.chat")
    assert rec["headers"]["authorization"] == "Bearer sk-direct"
    assert rec["path"] == "/v1/chat/completions"


def test_openai_stream_usage_only_on_request(oa):
    msgs = [{"role": "user", "content": "hi there"}]
    chunks = list(oa.chat.completions.create(model="m", messages=msgs, stream=True))
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == REPLY + "hi there"
    chunks = list(oa.chat.completions.create(model="m", messages=msgs, stream=True,
                                             stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 8


def test_openai_tools_embeddings_models_responses(oa):
    r = oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "weather in Paris?"}],
                                   tools=[WEATHER_TOOL])
    assert r.choices[0].finish_reason == "tool_calls"
    assert r.choices[0].message.tool_calls[0].function.arguments == '{"location":"Paris"}'
    e = oa.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    assert len(e.data) == 2 and len(e.data[0].embedding) == 16 and e.usage.prompt_tokens == 3
    assert "gpt-4o-mini" in [m.id for m in oa.models.list()]
    resp = oa.responses.create(model="gpt-4o", input="say hi")
    assert resp.output_text == REPLY + "say hi"
    with oa.responses.stream(model="gpt-4o", input="say hi") as s:
        final = s.get_final_response()
    assert final.output_text == REPLY + "say hi" and final.usage.output_tokens == 8


def test_anthropic_messages_stream_and_tools(an):
    m = an.messages.create(model="claude-sonnet-4-5", max_tokens=64, system="Be brief.",
                           messages=[{"role": "user", "content": "hi there"}])
    assert m.content[0].text == REPLY + "hi there"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (10, 8)
    with an.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                            messages=[{"role": "user", "content": "hi there"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == REPLY + "hi there"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 8
    with an.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                            messages=[{"role": "user", "content": "weather in Paris?"}],
                            tools=[{"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[-1].input == {"location": "Paris"}


def test_gemini_native_rest(sim):
    body = {"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]}
    r = requests.post(f"{sim}/v1beta/models/gemini-2.0-flash:generateContent",
                      headers={"x-goog-api-key": "g"}, json=body, timeout=5)
    assert r.status_code == 200
    assert r.json()["candidates"][0]["content"]["parts"][0]["text"] == REPLY + "hi there"
    r = requests.post(f"{sim}/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                      headers={"x-goog-api-key": "g"}, json=body, timeout=5)
    assert r.text.count("\r\n\r\n") == 3 and "finishReason" in r.text


def test_faults_reach_the_sdk(oa, an):
    with pytest.raises(openai.RateLimitError) as e:
        oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                   extra_headers={"x-sim-fault": "429"})
    assert e.value.response.headers["retry-after"] == "1"
    with pytest.raises(anthropic.InternalServerError) as e:
        an.messages.create(model="fault-500", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "api_error"
    start = time.monotonic()
    oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                               extra_headers={"x-sim-fault": "slow", "x-sim-delay-ms": "300"})
    assert time.monotonic() - start >= 0.3
    # The SDK surfaces a broken SSE event as the JSON decoder's error.
    with pytest.raises(ValueError):
        list(oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True,
                                        extra_headers={"x-sim-fault": "malformed"}))


def test_access_log_parser():
    line = ('2026-01-01T00:00:00.000000Z\tinfo\trequest\tgateway=default/gw listener=default '
            'http.path=/v1/chat/completions http.status=200 llm.request.tokens=5 '
            'error="upstream timed out" note="a=b" duration=12ms')
    f = parse_log_line(line)
    assert f["http.status"] == 200 and f["llm.request.tokens"] == 5
    assert f["error"] == "upstream timed out" and f["note"] == "a=b" and f["duration"] == "12ms"
    j = parse_log_line('{"timestamp":"t","level":"info","scope":"request","http.status":404}')
    assert j["http.status"] == 404
    assert parse_log_line("2026-01-01T00:00:00Z\tinfo\tproxy\tstarted") is None
    assert parse_log_line("random text") is None


def test_rotel_receives_and_parses_spans(rotel):
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "name": "chat gpt-4o", "kind": 3,
        "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
        "attributes": [
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
        ],
    }
    body = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "t"}}]},
                               "scopeSpans": [{"scope": {"name": "t"}, "spans": [span]}]}]}
    r = requests.post(f"{rotel.http_endpoint}/v1/traces", json=body, timeout=5)
    assert r.status_code == 200
    [s] = rotel.wait_for_span("chat gpt-4o")
    assert s.attributes == {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 12}
    assert s.trace_id == "5b8efff798038103d269b633813fc60c"
    assert s.kind == "SPAN_KIND_CLIENT"
    assert s.resource["service.name"] == "t"
