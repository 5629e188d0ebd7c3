"""OpenAI and Anthropic traffic through the gateway with the real SDKs, against the provider
simulator: responses reach the client intact, the gateway swaps the client's key for the
configured backend key, and the access log carries token counts but never a key.

Routes come from ``conftest.LLM_CONFIG`` (``/openai``, ``/anthropic``).
"""

from __future__ import annotations

import time

import anthropic
import openai
import pytest
import requests

from conftest import (
    ANTHROPIC_SECRET, CLIENT_KEY, OPENAI_SECRET, SECRETS, assert_no_leaks,
)

REPLY = "Hello from the simulator. You said: "
PROMPT = "Tell me a joke about proxies"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": PROMPT},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}
ANTHROPIC_WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": WEATHER_TOOL["function"]["parameters"],
}


@pytest.fixture
def oa(llm_gateway):
    return openai.OpenAI(base_url=f"{llm_gateway.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0)


@pytest.fixture
def an(llm_gateway):
    return anthropic.Anthropic(base_url=f"{llm_gateway.url}/anthropic", api_key=CLIENT_KEY, max_retries=0)


def one_log_line(gw, mark, prefix):
    """The single access-log line for a request under ``prefix`` written after ``mark``."""
    lines = gw.wait_for_access_log(since=mark, where=lambda l: str(l.get("http.path", "")).startswith(prefix))
    assert len(lines) == 1, f"expected one access-log line for {prefix}, got {lines}"
    return lines[0]


def assert_logged_tokens(line, prompt_tokens, completion_tokens):
    assert line.get("llm.request.tokens") == prompt_tokens, line
    assert line.get("llm.response.tokens") == completion_tokens, line


def openai_upstream(sim):
    """The one chat request the simulator received, checked for the OpenAI backend key."""
    recorded = sim.requests()
    assert len(recorded) == 1, [r["path"] for r in recorded]
    rec = recorded[0]
    assert rec["path"] == "/v1/chat/completions" or rec["path"].endswith("/chat/completions")
    assert rec["headers"].get("authorization") == f"Bearer {OPENAI_SECRET}"
    assert_no_leaks(recorded)
    return rec


def direct_usage(sim, body):
    """Usage the simulator reports for ``body`` when asked directly (then forgets the call)."""
    direct = dict(body, stream=False)
    direct.pop("stream_options", None)
    r = requests.post(f"{sim}/v1/chat/completions", json=direct,
                      headers={"authorization": "Bearer direct"}, timeout=5)
    r.raise_for_status()
    sim.reset()
    return r.json()["usage"]


# === OpenAI ===


def test_openai_chat(sim, llm_gateway, oa):
    mark = llm_gateway.log_mark()
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2)
    assert r.choices[0].message.content == REPLY + PROMPT
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "gpt-4o-mini-sim-2024"
    rec = openai_upstream(sim)
    assert rec["path"] == "/v1/chat/completions", "the gateway rewrites to the provider's own path"
    assert rec["body"]["model"] == "gpt-4o-mini"
    assert rec["body"]["messages"] == MESSAGES
    line = one_log_line(llm_gateway, mark, "/openai")
    assert line.get("http.status") == 200
    assert line.get("llm.provider") == "openai"
    assert line.get("llm.request.model") == "gpt-4o-mini"
    assert line.get("llm.response.model") == "gpt-4o-mini-sim-2024"
    assert_logged_tokens(line, r.usage.prompt_tokens, r.usage.completion_tokens)


def test_openai_stream_with_usage(sim, llm_gateway, oa):
    mark = llm_gateway.log_mark()
    chunks = list(oa.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY + PROMPT
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and chunks[-1].choices == []
    usage = chunks[-1].usage
    openai_upstream(sim)
    line = one_log_line(llm_gateway, mark, "/openai")
    assert_logged_tokens(line, usage.prompt_tokens, usage.completion_tokens)


def test_openai_stream_without_usage_still_logs_tokens(sim, llm_gateway, oa):
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    expected = direct_usage(sim, body)
    mark = llm_gateway.log_mark()
    chunks = list(oa.chat.completions.create(stream=True, **body))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY + PROMPT
    # The client did not ask for usage, so it must not get the usage chunk, even if the
    # gateway asked the provider for it to count tokens.
    assert all(c.usage is None for c in chunks), "client received a usage chunk it did not ask for"
    assert all(c.choices for c in chunks), "client received a chunk with empty choices"
    openai_upstream(sim)
    line = one_log_line(llm_gateway, mark, "/openai")
    assert_logged_tokens(line, expected["prompt_tokens"], expected["completion_tokens"])


def test_openai_tool_call(sim, llm_gateway, oa):
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=[WEATHER_TOOL])
    assert r.choices[0].finish_reason == "tool_calls"
    [call] = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"location":"Paris"}'
    assert openai_upstream(sim)["body"]["tools"] == [WEATHER_TOOL]

    # Streamed: argument pieces arrive in order and reassemble.
    sim.reset()
    chunks = list(oa.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=[WEATHER_TOOL], stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "get_weather" and deltas[0].id
    assert "".join(d.function.arguments or "" for d in deltas) == '{"location":"Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    # The tool result goes back and the model answers with text.
    sim.reset()
    follow = msgs + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=follow, tools=[WEATHER_TOOL])
    assert r.choices[0].message.content == "Hello from the simulator. The tool said: sunny, 21C"


def test_openai_embeddings(sim, llm_gateway, oa):
    mark = llm_gateway.log_mark()
    e = oa.embeddings.create(model="text-embedding-3-small", input=["hello world", "goodbye"])
    assert [d.index for d in e.data] == [0, 1]
    assert all(len(d.embedding) == 16 for d in e.data)
    assert e.usage.prompt_tokens == 3
    [rec] = sim.requests()
    assert rec["path"] == "/v1/embeddings"
    assert rec["headers"].get("authorization") == f"Bearer {OPENAI_SECRET}"
    assert_no_leaks([rec])
    line = one_log_line(llm_gateway, mark, "/openai")
    assert line.get("http.status") == 200
    assert line.get("llm.request.tokens") == 3


def test_openai_models(sim, llm_gateway, oa):
    ids = [m.id for m in oa.models.list()]
    assert "gpt-4o-mini" in ids
    [rec] = sim.requests()
    assert rec["method"] == "GET" and rec["path"] == "/v1/models"
    assert rec["headers"].get("authorization") == f"Bearer {OPENAI_SECRET}"


def test_openai_responses_api(sim, llm_gateway, oa):
    mark = llm_gateway.log_mark()
    r = oa.responses.create(model="gpt-4o-mini", input=PROMPT)
    assert r.output_text == REPLY + PROMPT
    with oa.responses.stream(model="gpt-4o-mini", input=PROMPT) as s:
        final = s.get_final_response()
    assert final.output_text == REPLY + PROMPT
    recorded = sim.requests()
    assert [x["path"] for x in recorded] == ["/v1/responses", "/v1/responses"]
    assert_no_leaks(recorded)
    lines = llm_gateway.wait_for_access_log(count=2, since=mark)
    for line in lines:
        assert_logged_tokens(line, r.usage.input_tokens, r.usage.output_tokens)


# === Anthropic ===


def anthropic_upstream(sim):
    recorded = sim.requests()
    assert len(recorded) == 1, [r["path"] for r in recorded]
    rec = recorded[0]
    assert rec["path"] == "/v1/messages"
    assert rec["headers"].get("x-api-key") == ANTHROPIC_SECRET
    assert "anthropic-version" in rec["headers"]
    assert_no_leaks(recorded)
    return rec


def test_anthropic_messages(sim, llm_gateway, an):
    mark = llm_gateway.log_mark()
    m = an.messages.create(model="claude-sonnet-4-5", max_tokens=128, system="You are terse.",
                           messages=[{"role": "user", "content": PROMPT}])
    assert m.content[0].text == REPLY + PROMPT
    assert m.stop_reason == "end_turn"
    assert m.model == "claude-sonnet-4-5-sim-2024"
    rec = anthropic_upstream(sim)
    assert rec["body"]["system"] == "You are terse."
    line = one_log_line(llm_gateway, mark, "/anthropic")
    assert line.get("http.status") == 200
    assert line.get("llm.provider") == "anthropic"
    assert_logged_tokens(line, m.usage.input_tokens, m.usage.output_tokens)


def test_anthropic_stream(sim, llm_gateway, an):
    mark = llm_gateway.log_mark()
    with an.messages.stream(model="claude-sonnet-4-5", max_tokens=128,
                            messages=[{"role": "user", "content": PROMPT}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == REPLY + PROMPT
    assert final.content[0].text == REPLY + PROMPT
    assert final.stop_reason == "end_turn"
    anthropic_upstream(sim)
    line = one_log_line(llm_gateway, mark, "/anthropic")
    assert_logged_tokens(line, final.usage.input_tokens, final.usage.output_tokens)


def test_anthropic_tool_use(sim, llm_gateway, an):
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    m = an.messages.create(model="claude-sonnet-4-5", max_tokens=128, messages=msgs, tools=[ANTHROPIC_WEATHER_TOOL])
    assert m.stop_reason == "tool_use"
    tool = m.content[-1]
    assert tool.type == "tool_use" and tool.name == "get_weather" and tool.input == {"location": "Paris"}
    sim.reset()
    with an.messages.stream(model="claude-sonnet-4-5", max_tokens=128, messages=msgs,
                            tools=[ANTHROPIC_WEATHER_TOOL]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[-1].input == {"location": "Paris"}
    anthropic_upstream(sim)


# === The access log as a whole ===


def test_access_log_one_line_per_request_and_no_keys(sim, llm_gateway, oa, an):
    mark = llm_gateway.log_mark()
    oa.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    list(oa.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    an.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    with an.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
        s.get_final_message()
    lines = llm_gateway.wait_for_access_log(count=4, since=mark)
    # Give a straggler a moment to show up, then insist on exactly four.
    time.sleep(0.3)
    lines = llm_gateway.access_log(since=mark)
    assert len(lines) == 4, lines
    for line in lines:
        assert isinstance(line.get("llm.request.tokens"), int) and line["llm.request.tokens"] > 0, line
        assert isinstance(line.get("llm.response.tokens"), int) and line["llm.response.tokens"] > 0, line
    output = llm_gateway.output()
    for secret in SECRETS + (CLIENT_KEY,):
        assert secret not in output, "a key appears in the gateway's output"
