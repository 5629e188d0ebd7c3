"""LLM spans through a real OTLP receiver (rotel): the seed documents' ``config.tracing``
block (GenAI fields added with CEL) exported over gRPC and over HTTP, for a plain and a
streamed chat completion, and for a translated request.
"""

from __future__ import annotations

import json

import openai
import pytest

from conftest import CLIENT_KEY, LLM_CONFIG, SECRETS

PROMPT = "Tell me a joke about proxies"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": PROMPT}]
REPLY = "Hello from the simulator. You said: " + PROMPT
PROMPT_TOKENS, COMPLETION_TOKENS = 15, 12

# As in the seed documents (Langfuse tab), endpoint and protocol filled in per test.
TRACING = """
  tracing:
    otlpEndpoint: {otlp}
    otlpProtocol: {otlp_protocol}
    randomSampling: true
    fields:
      add:
        gen_ai.operation.name: '"chat"'
        gen_ai.system: "llm.provider"
        gen_ai.prompt: "llm.prompt"
        gen_ai.completion: 'llm.completion.map(c, {"role":"assistant", "content": c})'
        gen_ai.usage.completion_tokens: "llm.output_tokens"
        gen_ai.usage.prompt_tokens: "llm.input_tokens"
        gen_ai.request.model: "llm.request_model"
        gen_ai.response.model: "llm.response_model"
        gen_ai.request: "flatten(llm.params)"
"""


def traced_config() -> str:
    head, rest = LLM_CONFIG.split("config:\n", 1)
    return head + "config:\n" + TRACING.lstrip("\n") + rest


@pytest.fixture(params=["grpc", "http"])
def traced_gateway(request, gateway_factory, rotel):
    proto = request.param
    otlp = rotel.grpc_endpoint if proto == "grpc" else rotel.http_endpoint
    gw = gateway_factory(traced_config(), otlp=otlp, otlp_protocol=proto, dead_port=1)
    return gw


def llm_span(rotel, model):
    """The SERVER span of the request for ``model`` (where configured fields go), after
    checking that the upstream CLIENT span hangs under it in the same trace."""
    [server] = rotel.wait_for_span(where=lambda s: s.kind == "SPAN_KIND_SERVER"
                                   and s.attributes.get("gen_ai.request.model") == model)
    [client] = rotel.wait_for_span(where=lambda s: s.kind == "SPAN_KIND_CLIENT"
                                   and s.attributes.get("gen_ai.request.model") == model)
    assert client.trace_id == server.trace_id and client.parent_id == server.span_id
    return server


def test_chat_span_has_genai_fields(sim, traced_gateway, rotel):
    oa = openai.OpenAI(base_url=f"{traced_gateway.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0)
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2)
    assert r.choices[0].message.content == REPLY
    span = llm_span(rotel, "gpt-4o-mini")
    a = span.attributes
    assert a.get("gen_ai.operation.name") == "chat"
    assert a.get("gen_ai.system") == "openai"
    assert a.get("gen_ai.response.model") == "gpt-4o-mini-sim-2024"
    assert a.get("gen_ai.usage.prompt_tokens") == PROMPT_TOKENS
    assert a.get("gen_ai.usage.completion_tokens") == COMPLETION_TOKENS
    assert a.get("gen_ai.request.temperature") == 0.2
    prompt = a.get("gen_ai.prompt")
    assert prompt and PROMPT in prompt, a
    assert {"role": "user", "content": PROMPT} in json.loads(prompt)
    completion = a.get("gen_ai.completion")
    assert completion and REPLY in completion, a
    assert span.trace_id and span.span_id
    everything = rotel.output()
    for secret in SECRETS + (CLIENT_KEY,):
        assert secret not in everything, "a key was exported in a span"


def test_stream_and_translated_spans(sim, traced_gateway, rotel):
    oa = openai.OpenAI(base_url=f"{traced_gateway.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0)
    list(oa.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    span = llm_span(rotel, "gpt-4o")
    assert span.attributes.get("gen_ai.usage.completion_tokens") == COMPLETION_TOKENS
    assert REPLY in (span.attributes.get("gen_ai.completion") or "")

    oa2an = openai.OpenAI(base_url=f"{traced_gateway.url}/oa2an/v1", api_key=CLIENT_KEY, max_retries=0)
    oa2an.chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES)
    span = llm_span(rotel, "claude-sonnet-4-5")
    assert span.attributes.get("gen_ai.system") == "anthropic"
    assert span.attributes.get("gen_ai.usage.prompt_tokens") == PROMPT_TOKENS
    assert span.attributes.get("gen_ai.response.model") == "claude-sonnet-4-5-sim-2024"
