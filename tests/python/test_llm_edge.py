"""Edge cases of LLM proxying that real providers produce and gateways tend to get wrong:
cached and reasoning token accounting, truncated replies (length / max_tokens) across
translation, Azure's choice-less first stream chunk, concurrent streams, large prompts, and
model overrides.
"""

from __future__ import annotations

import concurrent.futures

import anthropic
import openai
import pytest

from conftest import CLIENT_KEY

PROMPT = "Tell me a joke about proxies"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": PROMPT}]
PROMPT_TOKENS = 15


def client(gw, prefix):
    return openai.OpenAI(base_url=f"{gw.url}/{prefix}/v1", api_key=CLIENT_KEY, max_retries=0)


def only_line(gw, mark, prefix):
    lines = gw.wait_for_access_log(since=mark, where=lambda l: str(l.get("http.path", "")).startswith(prefix))
    assert len(lines) == 1, lines
    return lines[0]


def test_openai_cached_and_reasoning_tokens(sim, llm_gateway):
    oa = client(llm_gateway, "openai")
    r = oa.chat.completions.create(model="o3-mini", messages=MESSAGES, extra_headers={"x-sim-cached-tokens": "5"})
    assert r.usage.prompt_tokens == PROMPT_TOKENS
    assert r.usage.prompt_tokens_details.cached_tokens == 5
    assert r.usage.completion_tokens_details.reasoning_tokens == 8


def test_anthropic_cache_reads_count_as_prompt_tokens_for_openai_clients(sim, llm_gateway):
    """Anthropic reports cache reads outside ``input_tokens``; OpenAI's ``prompt_tokens``
    includes cached tokens. A translating gateway must add them back."""
    mark = llm_gateway.log_mark()
    r = client(llm_gateway, "oa2an").chat.completions.create(
        model="claude-sonnet-4-5", messages=MESSAGES, extra_headers={"x-sim-cached-tokens": "5"})
    [rec] = sim.requests()
    assert rec["status"] == 200
    assert r.usage.prompt_tokens == PROMPT_TOKENS, "prompt_tokens must include Anthropic's cache_read_input_tokens"
    details = r.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens == 5
    line = only_line(llm_gateway, mark, "/oa2an")
    assert line.get("llm.request.tokens") == PROMPT_TOKENS


def test_length_finish_translates_both_ways(sim, llm_gateway):
    # OpenAI client, Anthropic backend: stop_reason max_tokens -> finish_reason length.
    r = client(llm_gateway, "oa2an").chat.completions.create(model="claude-sonnet-4-5", messages=MESSAGES,
                                                              max_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == "Hello from the"
    [rec] = sim.requests()
    assert rec["body"]["max_tokens"] == 3, "the client's max_tokens must reach Anthropic"
    chunks = list(client(llm_gateway, "oa2an").chat.completions.create(
        model="claude-sonnet-4-5", messages=MESSAGES, max_tokens=3, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]

    # Anthropic client, OpenAI backend: finish_reason length -> stop_reason max_tokens.
    an = anthropic.Anthropic(base_url=f"{llm_gateway.url}/an2oa", api_key=CLIENT_KEY, max_retries=0)
    m = an.messages.create(model="gpt-4o-mini", max_tokens=3, messages=[{"role": "user", "content": PROMPT}])
    assert m.stop_reason == "max_tokens"
    assert m.content[0].text == "Hello from the"
    with an.messages.stream(model="gpt-4o-mini", max_tokens=3, messages=[{"role": "user", "content": PROMPT}]) as s:
        assert s.get_final_message().stop_reason == "max_tokens"


def test_azure_stream_logs_the_response_model(sim, llm_gateway):
    """Azure's first streamed chunk carries only prompt filter results (no choices, empty
    model); the response model must come from the chunks that have one."""
    mark = llm_gateway.log_mark()
    chunks = list(client(llm_gateway, "azure").chat.completions.create(model="gpt-4o", messages=MESSAGES,
                                                                        stream=True))
    models = {c.model for c in chunks if c.choices}
    assert models == {"gpt-4o-sim-2024"}
    line = only_line(llm_gateway, mark, "/azure")
    assert line.get("llm.response.model") == "gpt-4o-sim-2024", line
    assert line.get("llm.response.tokens") == 12


@pytest.mark.parametrize("prefix", ["openai", "oa2an"])
def test_concurrent_streams(sim, llm_gateway, prefix):
    n = 16
    oa = client(llm_gateway, prefix)
    mark = llm_gateway.log_mark()

    def one(i):
        prompt = f"request number {i}"
        chunks = list(oa.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], stream=True,
            extra_headers={"x-sim-chunk-delay-ms": "10"}))
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        texts = list(pool.map(one, range(n)))
    assert texts == [f"Hello from the simulator. You said: request number {i}" for i in range(n)]
    lines = llm_gateway.wait_for_access_log(count=n, since=mark)
    assert len(lines) == n
    assert all(l.get("http.status") == 200 and l.get("llm.response.tokens") == 9 for l in lines), lines


def test_large_prompt(sim, llm_gateway):
    words = 60_000  # about 400 KB of JSON
    big = " ".join(f"w{i}" for i in range(words))
    r = client(llm_gateway, "openai").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": big}])
    assert r.usage.prompt_tokens == words + 3
    [rec] = sim.requests()
    assert rec["body"]["messages"][0]["content"] == big


MODEL_OVERRIDE = """
config:
  readinessAddr: 127.0.0.1:{ready_port}
  statsAddr: 127.0.0.1:{stats_port}
  adminAddr: 127.0.0.1:{admin_port}
binds:
- port: {port}
  listeners:
  - name: default
    routes:
    - name: pinned
      backends:
      - ai:
          name: pinned
          provider: {openAI: {model: gpt-4o-pinned}}
          hostOverride: "{sim}"
      policies:
        backendAuth: {key: "sk-test-secret"}
"""


def test_provider_model_overrides_the_request(sim, gateway_factory):
    gw = gateway_factory(MODEL_OVERRIDE)
    mark = gw.log_mark()
    oa = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=CLIENT_KEY, max_retries=0)
    r = oa.chat.completions.create(model="whatever-the-client-says", messages=MESSAGES)
    [rec] = sim.requests()
    assert rec["body"]["model"] == "gpt-4o-pinned"
    assert r.model == "gpt-4o-pinned-sim-2024"
    [line] = gw.wait_for_access_log(since=mark)
    assert line.get("llm.response.model") == "gpt-4o-pinned-sim-2024"

