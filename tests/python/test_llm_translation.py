"""Format translation through the gateway: an OpenAI client in front of an Anthropic backend
(chat completions ↔ messages), an Anthropic client in front of an OpenAI backend, and OpenAI
clients in front of Gemini and Azure OpenAI, streaming and not, with tool calls.

The simulator answers every provider with the same words and the same token counts for the
same prompt, so what the client sees can be compared exactly.
Routes come from ``conftest.LLM_CONFIG`` (``/oa2an``, ``/an2oa``, ``/gemini``, ``/azure``).
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from conftest import (
    ANTHROPIC_SECRET, AZURE_SECRET, CLIENT_KEY, GEMINI_SECRET, OPENAI_SECRET, assert_no_leaks,
)

REPLY = "Hello from the simulator. You said: "
PROMPT = "Tell me a joke about proxies"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": PROMPT},
]
# 3 + 6 words, 2 messages at 3 tokens each; the reply is 6 + 6 words.
PROMPT_TOKENS, COMPLETION_TOKENS = 15, 12
WEATHER_PARAMS = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                                 "parameters": WEATHER_PARAMS}}


def log_line(gw, mark, prefix):
    lines = gw.wait_for_access_log(since=mark, where=lambda l: str(l.get("http.path", "")).startswith(prefix))
    assert len(lines) == 1, lines
    return lines[0]


# === OpenAI client → Anthropic backend ===


@pytest.fixture
def oa2an(llm_gateway):
    return openai.OpenAI(base_url=f"{llm_gateway.url}/oa2an/v1", api_key=CLIENT_KEY, max_retries=0)


def anthropic_upstream(sim):
    recorded = sim.requests()
    assert [r["path"] for r in recorded] == ["/v1/messages"], "gateway must call Anthropic's messages API"
    rec = recorded[0]
    assert rec["headers"].get("x-api-key") == ANTHROPIC_SECRET
    assert rec["headers"].get("anthropic-version"), "anthropic-version header is mandatory upstream"
    assert_no_leaks(recorded)
    assert rec["status"] == 200, f"simulator refused the translated request: {rec}"
    return rec


def test_openai_client_to_anthropic(sim, llm_gateway, oa2an):
    mark = llm_gateway.log_mark()
    r = oa2an.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == REPLY + PROMPT
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "claude-sonnet-4-5-sim-2024"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert r.usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS
    body = anthropic_upstream(sim)["body"]
    assert body["model"] == "claude-sonnet-4-5"
    assert isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 0
    system = body.get("system")
    system_text = system if isinstance(system, str) else " ".join(b.get("text", "") for b in system or [])
    assert system_text == "You are terse.", "the system message becomes Anthropic's system prompt"
    assert [m["role"] for m in body["messages"]] == ["user"]
    line = log_line(llm_gateway, mark, "/oa2an")
    assert line.get("llm.provider") == "anthropic"
    assert (line.get("llm.request.tokens"), line.get("llm.response.tokens")) == (PROMPT_TOKENS, COMPLETION_TOKENS)


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_client_to_anthropic_stream(sim, llm_gateway, oa2an, include_usage):
    mark = llm_gateway.log_mark()
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(oa2an.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES, stream=True, **extra))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY + PROMPT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = [c.usage for c in chunks if c.usage is not None]
    if include_usage:
        assert len(usage) == 1
        assert (usage[0].prompt_tokens, usage[0].completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    else:
        assert usage == [], "usage chunk sent to a client that did not ask for it"
    body = anthropic_upstream(sim)["body"]
    assert body.get("stream") is True
    line = log_line(llm_gateway, mark, "/oa2an")
    assert (line.get("llm.request.tokens"), line.get("llm.response.tokens")) == (PROMPT_TOKENS, COMPLETION_TOKENS)


def test_openai_client_to_anthropic_tool_call(sim, llm_gateway, oa2an):
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = oa2an.chat.completions.create(model="claude-sonnet-4-5", messages=msgs, tools=[WEATHER_TOOL])
    assert r.choices[0].finish_reason == "tool_calls"
    [call] = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    body = anthropic_upstream(sim)["body"]
    [tool] = body["tools"]
    assert tool["name"] == "get_weather" and tool["input_schema"] == WEATHER_PARAMS

    sim.reset()
    chunks = list(oa2an.chat.completions.create(model="claude-sonnet-4-5", messages=msgs, tools=[WEATHER_TOOL],
                                                stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert any(d.function and d.function.name == "get_weather" for d in deltas)
    assert json.loads("".join(d.function.arguments or "" for d in deltas if d.function)) == {"location": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]

    # Tool result round trip: OpenAI `tool` message → Anthropic `tool_result` block.
    sim.reset()
    follow = msgs + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    r = oa2an.chat.completions.create(model="claude-sonnet-4-5", messages=follow, tools=[WEATHER_TOOL])
    assert r.choices[0].message.content == "Hello from the simulator. The tool said: sunny, 21C"
    body = anthropic_upstream(sim)["body"]
    last = body["messages"][-1]
    assert last["role"] == "user"
    assert last["content"][0]["type"] == "tool_result"
    assert last["content"][0]["tool_use_id"] == call.id


# === Anthropic client → OpenAI backend ===


@pytest.fixture
def an2oa(llm_gateway):
    return anthropic.Anthropic(base_url=f"{llm_gateway.url}/an2oa", api_key=CLIENT_KEY, max_retries=0)


def openai_upstream(sim):
    recorded = sim.requests()
    assert [r["path"] for r in recorded] == ["/v1/chat/completions"], "gateway must call OpenAI chat completions"
    rec = recorded[0]
    assert rec["headers"].get("authorization") == f"Bearer {OPENAI_SECRET}"
    assert "x-api-key" not in rec["headers"]
    assert_no_leaks(recorded)
    assert rec["status"] == 200, f"simulator refused the translated request: {rec}"
    return rec


def test_anthropic_client_to_openai(sim, llm_gateway, an2oa):
    mark = llm_gateway.log_mark()
    m = an2oa.messages.create(model="gpt-4o-mini", max_tokens=128, system="You are terse.",
                              messages=[{"role": "user", "content": PROMPT}])
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].type == "text" and m.content[0].text == REPLY + PROMPT
    assert m.stop_reason == "end_turn"
    assert m.model == "gpt-4o-mini-sim-2024"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    body = openai_upstream(sim)["body"]
    assert body["model"] == "gpt-4o-mini"
    first = body["messages"][0]
    assert first["role"] == "system", body["messages"]
    content = first["content"]
    text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
    assert text == "You are terse.", "Anthropic's system prompt becomes the system message"
    assert body["messages"][-1]["role"] == "user"
    line = log_line(llm_gateway, mark, "/an2oa")
    assert (line.get("llm.request.tokens"), line.get("llm.response.tokens")) == (PROMPT_TOKENS, COMPLETION_TOKENS)


def test_anthropic_client_to_openai_stream(sim, llm_gateway, an2oa):
    mark = llm_gateway.log_mark()
    with an2oa.messages.stream(model="gpt-4o-mini", max_tokens=128, system="You are terse.",
                               messages=[{"role": "user", "content": PROMPT}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == REPLY + PROMPT
    assert final.content[0].text == REPLY + PROMPT
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == COMPLETION_TOKENS
    body = openai_upstream(sim)["body"]
    assert body.get("stream") is True
    line = log_line(llm_gateway, mark, "/an2oa")
    assert (line.get("llm.request.tokens"), line.get("llm.response.tokens")) == (PROMPT_TOKENS, COMPLETION_TOKENS)


def test_anthropic_client_to_openai_tool_use(sim, llm_gateway, an2oa):
    tool = {"name": "get_weather", "description": "Current weather", "input_schema": WEATHER_PARAMS}
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    m = an2oa.messages.create(model="gpt-4o-mini", max_tokens=128, messages=msgs, tools=[tool])
    assert m.stop_reason == "tool_use"
    use = [b for b in m.content if b.type == "tool_use"]
    assert len(use) == 1 and use[0].name == "get_weather" and use[0].input == {"location": "Paris"}
    body = openai_upstream(sim)["body"]
    assert body["tools"][0]["function"]["name"] == "get_weather"
    sim.reset()
    with an2oa.messages.stream(model="gpt-4o-mini", max_tokens=128, messages=msgs, tools=[tool]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.input for b in final.content if b.type == "tool_use"] == [{"location": "Paris"}]


# === OpenAI client → Gemini and Azure OpenAI backends ===


def gemini_upstream(sim):
    recorded = sim.requests()
    assert len(recorded) == 1, [r["path"] for r in recorded]
    rec = recorded[0]
    assert rec["endpoint"] in ("openai.chat", "openai.embeddings", "gemini.generate", "gemini.stream", "gemini.embed"), rec["path"]
    assert rec["path"].startswith(("/v1beta/", "/v1/")), rec["path"]
    creds = [rec["headers"].get("x-goog-api-key"), rec["headers"].get("authorization"), rec.get("query") or ""]
    assert any(c and GEMINI_SECRET in c for c in creds), "Gemini key missing upstream"
    assert_no_leaks(recorded)
    assert rec["status"] == 200, rec
    return rec


@pytest.fixture
def oa2gem(llm_gateway):
    return openai.OpenAI(base_url=f"{llm_gateway.url}/gemini/v1", api_key=CLIENT_KEY, max_retries=0)


def test_openai_client_to_gemini(sim, llm_gateway, oa2gem):
    mark = llm_gateway.log_mark()
    r = oa2gem.chat.completions.create(model="gemini-2.0-flash", messages=MESSAGES)
    assert r.choices[0].message.content == REPLY + PROMPT
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    gemini_upstream(sim)
    line = log_line(llm_gateway, mark, "/gemini")
    assert line.get("llm.provider") == "gemini"
    assert (line.get("llm.request.tokens"), line.get("llm.response.tokens")) == (PROMPT_TOKENS, COMPLETION_TOKENS)


def test_openai_client_to_gemini_stream(sim, llm_gateway, oa2gem):
    mark = llm_gateway.log_mark()
    chunks = list(oa2gem.chat.completions.create(model="gemini-2.0-flash", messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY + PROMPT
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and (usage[-1].prompt_tokens, usage[-1].completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    gemini_upstream(sim)
    line = log_line(llm_gateway, mark, "/gemini")
    assert (line.get("llm.request.tokens"), line.get("llm.response.tokens")) == (PROMPT_TOKENS, COMPLETION_TOKENS)


@pytest.fixture
def oa2az(llm_gateway):
    return openai.OpenAI(base_url=f"{llm_gateway.url}/azure/v1", api_key=CLIENT_KEY, max_retries=0)


def azure_upstream(sim):
    recorded = sim.requests()
    assert len(recorded) == 1, [r["path"] for r in recorded]
    rec = recorded[0]
    assert rec["path"].startswith("/openai/"), rec["path"]
    creds = [rec["headers"].get("api-key"), rec["headers"].get("authorization")]
    assert any(c and AZURE_SECRET in c for c in creds), "Azure key missing upstream"
    assert_no_leaks(recorded)
    assert rec["status"] == 200, rec
    return rec


def test_openai_client_to_azure(sim, llm_gateway, oa2az):
    r = oa2az.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert r.choices[0].message.content == REPLY + PROMPT
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    azure_upstream(sim)
    sim.reset()
    chunks = list(oa2az.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    # Azure's first chunk has no choices (prompt filter results only); the client copes either way.
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY + PROMPT
    azure_upstream(sim)


def test_embeddings_on_gemini_and_azure(sim, llm_gateway, oa2gem, oa2az):
    """Both providers serve OpenAI-shaped embeddings (Gemini on its OpenAI-compatible
    surface, Azure per deployment), so an OpenAI client's embeddings call must work."""
    e = oa2az.embeddings.create(model="text-embedding-3-small", input=["hello world", "goodbye"])
    assert [len(d.embedding) for d in e.data] == [16, 16] and e.usage.prompt_tokens == 3
    azure_upstream(sim)
    sim.reset()
    e = oa2gem.embeddings.create(model="text-embedding-004", input=["hello world", "goodbye"])
    # Either Gemini surface will do (OpenAI-compatible `/v1beta/openai/embeddings`, or native
    # `:batchEmbedContents`, which reports no token usage).
    assert [d.index for d in e.data] == [0, 1] and [len(d.embedding) for d in e.data] == [16, 16]
    assert e.data[0].embedding != e.data[1].embedding
    gemini_upstream(sim)
