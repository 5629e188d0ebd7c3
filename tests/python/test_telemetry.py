"""Tracing, access log and metrics through the running gateway, with real SDK clients and a
real OTLP receiver (rotel).

Each seed document's tracing block is used verbatim; only the collector address is replaced
by rotel's (and, for Langfuse, the cloud URL by rotel's HTTP receiver, since rotel serves only
``/v1/traces``; the kept-path behaviour is covered by the Rust export tests).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import openai
import pytest
import requests

from conftest import CLIENT_KEY, ROOT, binary, free_port, wait_until

PROMPT = "Tell me a joke about proxies"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": PROMPT},
]
SPAN = "POST /openai/v1/chat/completions"

BASE = """
config:
  readinessAddr: 127.0.0.1:{ready_port}
  statsAddr: 127.0.0.1:{stats_port}
  adminAddr: 127.0.0.1:{admin_port}
{telemetry}
{policies}
binds:
- port: {port}
  listeners:
  - name: default
    routes:
    - name: openai
      matches: [{path: {pathPrefix: /openai}}]
      backends:
      - ai: {name: openai, provider: {openAI: {}}, hostOverride: "{sim}"}
      policies:
        backendAuth: {key: "sk-test-secret"}
"""

# --- Seed tracing blocks (indented under `config:`), endpoints replaced by {otlp}.

SEED_000_GEMINI = """
  tracing:
    otlpEndpoint: {otlp}
    otlpProtocol: grpc
    randomSampling: true
    fields:
      add:
        gen_ai.operation.name: '"chat"'
        gen_ai.system: "llm.provider"
        gen_ai.request.model: "llm.requestModel"
        gen_ai.response.model: "llm.responseModel"
        gen_ai.usage.completion_tokens: "llm.outputTokens"
        gen_ai.usage.prompt_tokens: "llm.inputTokens"
"""

SEED_001_JAEGER = """
  tracing:
    otlpEndpoint: {otlp}
    otlpProtocol: grpc
    randomSampling: true
    fields:
      add:
        gen_ai.operation.name: '"chat"'
        gen_ai.system: "llm.provider"
        gen_ai.request.model: "llm.request_model"
        gen_ai.response.model: "llm.response_model"
        gen_ai.usage.completion_tokens: "llm.output_tokens"
        gen_ai.usage.prompt_tokens: "llm.input_tokens"
"""

SEED_LANGFUSE = """
  tracing:
    otlpEndpoint: {otlp}
    otlpProtocol: http
    headers:
      Authorization: "Basic <base64-encoded-credentials>"
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

SEED_PHOENIX = """
  tracing:
    otlpEndpoint: {otlp}
    randomSampling: true
    fields:
      add:
        span.name: '"openai.chat"'
        openinference.span.kind: '"LLM"'
        llm.system: "llm.provider"
        llm.input_messages: 'flatten_recursive(llm.prompt.map(c, {"message": c}))'
        llm.output_messages: 'flatten_recursive(llm.completion.map(c, {"role":"assistant", "content": c}))'
        llm.token_count.completion: "llm.output_tokens"
        llm.token_count.prompt: "llm.input_tokens"
        llm.token_count.total: "llm.total_tokens"
"""

SEED_OPENLLMETRY = """
  tracing:
    otlpEndpoint: {otlp}
    randomSampling: true
    fields:
      add:
        span.name: '"openai.chat"'
        gen_ai.operation.name: '"chat"'
        gen_ai.system: "llm.provider"
        gen_ai.prompt: "flatten_recursive(llm.prompt)"
        gen_ai.completion: 'flatten_recursive(llm.completion.map(c, {"role":"assistant", "content": c}))'
        gen_ai.usage.completion_tokens: "llm.output_tokens"
        gen_ai.usage.prompt_tokens: "llm.input_tokens"
        gen_ai.request.model: "llm.request_model"
        gen_ai.response.model: "llm.response_model"
        gen_ai.request: "flatten(llm.params)"
        llm.is_streaming: "llm.streaming"
"""

SEED_004_ENTERPRISE = """
  tracing:
    otlpEndpoint: {otlp}
    otlpProtocol: grpc
    randomSampling: true
    fields:
      add:
        gen_ai.operation.name: '"chat"'
        gen_ai.system: "llm.provider"
        gen_ai.request.model: "llm.requestModel"
        gen_ai.response.model: "llm.responseModel"
        gen_ai.usage.prompt_tokens: "llm.inputTokens"
        gen_ai.usage.completion_tokens: "llm.outputTokens"
        gen_ai.usage.total_tokens: "llm.totalTokens"
        gen_ai.request.temperature: "llm.params.temperature"
        gen_ai.prompt: "llm.prompt"
        gen_ai.completion: "llm.completion"
"""

# Seed 002: the AgentgatewayPolicy `frontend.tracing` block, as a standalone frontend policy.
SEED_002_POLICY = """
frontendPolicies:
  tracing:
    backendRef:
      name: 127.0.0.1
      port: {otlp_port}
    protocol: GRPC
    clientSampling: "true"
    randomSampling: "true"
    resources:
    - name: deployment.environment
      expression: '"development"'
    - name: service.name
      expression: '"agentgateway"'
    attributes:
      add:
      - name: request.host
        expression: 'request.host'
"""


def start(factory, telemetry="", policies="", **kw):
    text = BASE.replace("{telemetry}", telemetry).replace("{policies}", policies)
    return factory(text, **kw)


def chat(gw, **kw):
    client = openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0)
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **kw)


def server_span(rotel, name=SPAN, where=lambda s: True, **kw):
    """The newest SERVER span named ``name`` that satisfies ``where``."""
    return rotel.wait_for_span(name, where=lambda s: s.kind == "SPAN_KIND_SERVER" and where(s), **kw)[-1]


def test_seed_000_grpc_camel_case_fields(sim, gateway_factory, rotel):
    gw = start(gateway_factory, SEED_000_GEMINI.replace("{otlp}", rotel.grpc_endpoint))
    mark = gw.log_mark()
    r = chat(gw)
    span = server_span(rotel)
    a = span.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"] == r.model
    assert a["gen_ai.usage.prompt_tokens"] == r.usage.prompt_tokens
    assert a["gen_ai.usage.completion_tokens"] == r.usage.completion_tokens
    assert a["http.status"] == 200 and a["url.scheme"] == "http"
    assert a["network.protocol.version"] == "1.1"
    assert "gen_ai.prompt" not in a, "prompt text only when a field asks for it"
    # The access log line carries the same trace and span ids.
    line = gw.wait_for_access_log(since=mark)[0]
    assert line["trace.id"] == span.trace_id and line["span.id"] == span.span_id
    # The upstream call is a CLIENT child of the server span.
    client = rotel.wait_for_span(where=lambda s: s.kind == "SPAN_KIND_CLIENT" and s.trace_id == span.trace_id)[0]
    assert client.parent_id == span.span_id
    assert client.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    # Usage is on the SERVER span only: backends summing a trace's usage count the call once.
    assert not [k for k in client.attributes if k.startswith("gen_ai.usage.")], client.attributes
    # ...and the provider saw that client span as its parent.
    upstream = sim.requests()[0]["headers"]
    assert upstream["traceparent"] == f"00-{span.trace_id}-{client.span_id}-01"


def test_seed_001_jaeger_snake_case_fields(sim, gateway_factory, rotel):
    gw = start(gateway_factory, SEED_001_JAEGER.replace("{otlp}", rotel.grpc_endpoint))
    r = chat(gw)
    a = server_span(rotel).attributes
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"] == r.model
    assert a["gen_ai.usage.prompt_tokens"] == r.usage.prompt_tokens


def test_seed_langfuse_http_prompt_completion_params(sim, gateway_factory, rotel):
    gw = start(gateway_factory, SEED_LANGFUSE.replace("{otlp}", rotel.http_endpoint))
    r = chat(gw, temperature=0.2, max_tokens=50)
    a = server_span(rotel).attributes
    assert json.loads(a["gen_ai.prompt"]) == MESSAGES
    assert json.loads(a["gen_ai.completion"]) == [{"role": "assistant", "content": r.choices[0].message.content}]
    assert a["gen_ai.request.temperature"] == pytest.approx(0.2)
    assert a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.usage.completion_tokens"] == r.usage.completion_tokens


def test_seed_phoenix_openinference_names(sim, gateway_factory, rotel):
    gw = start(gateway_factory, SEED_PHOENIX.replace("{otlp}", rotel.grpc_endpoint))
    r = chat(gw)
    a = server_span(rotel, "openai.chat").attributes
    assert a["openinference.span.kind"] == "LLM"
    assert a["llm.input_messages.0.message.role"] == "system"
    assert a["llm.input_messages.1.message.content"] == PROMPT
    assert a["llm.output_messages.0.content"] == r.choices[0].message.content
    assert a["llm.token_count.total"] == r.usage.prompt_tokens + r.usage.completion_tokens


def test_seed_openllmetry_streaming(sim, gateway_factory, rotel):
    gw = start(gateway_factory, SEED_OPENLLMETRY.replace("{otlp}", rotel.grpc_endpoint))
    chunks = list(chat(gw, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    a = server_span(rotel, "openai.chat").attributes
    assert a["llm.is_streaming"] is True
    assert a["gen_ai.prompt.1.role"] == "user" and a["gen_ai.prompt.1.content"] == PROMPT
    assert a["gen_ai.completion.0.content"] == text
    assert a["gen_ai.usage.completion_tokens"] == chunks[-1].usage.completion_tokens


def test_seed_002_policy_resources_and_attributes(sim, gateway_factory, rotel):
    gw = start(gateway_factory, policies=SEED_002_POLICY.replace("{otlp_port}", str(rotel.grpc_port)))
    chat(gw)
    span = server_span(rotel)
    assert span.attributes["request.host"] == f"127.0.0.1:{gw.port}"
    assert span.resource.get("service.name") == "agentgateway"
    assert span.resource.get("deployment.environment") == "development"


def test_seed_004_env_only_and_grpc_scheme(sim, gateway_factory, rotel, monkeypatch):
    # Helm values of seed 004: only the standard env vars; every request is traced.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.grpc_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge-gw")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci,team=ai%20platform")
    gw = start(gateway_factory)
    chat(gw)
    resource = server_span(rotel).resource
    assert resource.get("service.name") == "edge-gw"
    assert resource.get("deployment.environment") == "ci" and resource.get("team") == "ai platform"
    gw.stop()
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES")
    # The enterprise rawConfig block, with its grpc:// endpoint scheme.
    gw = start(gateway_factory, SEED_004_ENTERPRISE.replace(
        "{otlp}", f"grpc://127.0.0.1:{rotel.grpc_port}"))
    r = chat(gw, temperature=0.5)
    a = server_span(rotel, where=lambda s: "gen_ai.usage.total_tokens" in s.attributes).attributes
    assert a["gen_ai.usage.total_tokens"] == r.usage.total_tokens
    assert a["gen_ai.request.temperature"] == pytest.approx(0.5)
    assert json.loads(a["gen_ai.completion"]) == [r.choices[0].message.content]


def test_incoming_traceparent_is_the_parent(sim, gateway_factory, rotel):
    gw = start(gateway_factory, SEED_000_GEMINI.replace("{otlp}", rotel.grpc_endpoint))
    trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    chat(gw, extra_headers={"traceparent": f"00-{trace}-{parent}-01", "tracestate": "congo=t61rcWkgMzE"})
    span = server_span(rotel, where=lambda s: s.trace_id == trace)
    assert span.parent_id == parent
    upstream = sim.requests()[0]["headers"]
    assert upstream["traceparent"].startswith(f"00-{trace}-")
    assert upstream["traceparent"].split("-")[2] not in (parent, span.span_id)
    assert upstream.get("tracestate") == "congo=t61rcWkgMzE"


DEAD_ROUTE = """
    - name: dead
      matches: [{path: {pathPrefix: /dead}}]
      backends:
      - ai: {name: openai-dead, provider: {openAI: {}}, hostOverride: "127.0.0.1:{dead_port}"}
      policies:
        backendAuth: {key: "sk-test-secret"}
"""


def test_failed_upstream_marks_spans_as_errors(sim, gateway_factory, rotel):
    text = (BASE + DEAD_ROUTE).replace("{telemetry}", SEED_000_GEMINI.replace("{otlp}", rotel.grpc_endpoint))
    gw = gateway_factory(text.replace("{policies}", ""), dead_port=free_port())
    client = openai.OpenAI(base_url=f"{gw.url}/dead/v1", api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert err.value.status_code >= 500
    span = server_span(rotel, "POST /dead/v1/chat/completions")
    assert "ERROR" in span.status.upper(), span
    assert span.attributes["http.status"] == err.value.status_code
    assert "error.type" in span.attributes


def metrics_text(gw) -> str:
    return requests.get(f"http://127.0.0.1:{gw.stats_port}/metrics", timeout=5).text


def test_dead_collector_never_slows_requests(sim, gateway_factory):
    gw = start(gateway_factory, SEED_000_GEMINI.replace("{otlp}", f"http://127.0.0.1:{free_port()}"))
    started = time.monotonic()
    for _ in range(5):
        chat(gw)
    assert time.monotonic() - started < 5.0

    def dropped():
        for line in metrics_text(gw).splitlines():
            if line.startswith('agentgateway_tracing_spans_dropped_total{destination="default",reason="export_failed"}'):
                return float(line.rsplit(" ", 1)[1]) >= 5
        return False

    wait_until(dropped, 15, interval=0.5, what="export_failed drops")


def test_metrics_lint_clean_and_genai_families(sim, gateway_factory):
    gw = start(gateway_factory)
    chat(gw)
    list(chat(gw, stream=True))
    text = metrics_text(gw)
    assert 'gen_ai_token_type="input"' in text and 'gen_ai_token_type="output"' in text
    assert "agentgateway_gen_ai_server_time_to_first_token_bucket{" in text
    req = [l for l in text.splitlines() if l.startswith("agentgateway_requests_total{") and 'route="' in l]
    assert sum(float(l.rsplit(" ", 1)[1]) for l in req) >= 2
    promtool = shutil.which("promtool")
    if promtool is None:
        assert os.environ.get("CI") != "true", "promtool missing under CI=true"
        pytest.skip("promtool not installed")
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_json_access_log_fields_never_show_keys(sim, gateway_factory):
    logging = """
  logging:
    format: json
    fields:
      add:
        user_agent: 'request.headers["user-agent"]'
        auth: 'request.headers["authorization"]'
        model: llm.requestModel
      remove: [src.addr]
"""
    gw = start(gateway_factory, logging)
    mark = gw.log_mark()
    chat(gw)
    line = gw.wait_for_access_log(since=mark)[0]
    assert line["model"] == "gpt-4o-mini"
    assert line["user_agent"].startswith("OpenAI/Python")
    assert "src.addr" not in line
    assert line.get("auth") in (None, "<redacted>")
    assert CLIENT_KEY not in gw.output()


# A 205-byte expression found by fuzzing; cel-interpreter 0.10's parser grew to 4.9 GB on it.
FUZZ_CEL = (ROOT / "gateway-user/fuzz/regressions/cel/parser-memory-blowup").read_text()
FUZZ_CEL_DEEP = (ROOT / "gateway-user/fuzz/regressions/cel/parser-memory-blowup-cel-chars").read_text()

VALIDATE_TRACING = """
config:
  tracing:
    otlpEndpoint: http://127.0.0.1:4317
    fields:
      add:
        x: '{expr}'
binds:
- port: 3000
  listeners:
  - routes:
    - backends: [{{host: 127.0.0.1:1}}]
"""

VALIDATE_MCP = """
binds:
- port: 3000
  listeners:
  - routes:
    - backends:
      - mcp:
          targets: [{{name: a, stdio: {{cmd: x}}}}]
        policies:
          mcpAuthorization:
            rules: ['{expr}']
"""


LONG_CEL = " || ".join(['llm.provider == "x"'] * 600)


@pytest.mark.parametrize("template,path", [
    (VALIDATE_TRACING, 'config.tracing.fields.add["x"]'),
    (VALIDATE_MCP, "backends[0].mcp.policies.mcpAuthorization.rules[0]"),
], ids=["tracing", "mcpAuthorization"])
@pytest.mark.parametrize("expr,bound", [
    (FUZZ_CEL, "which starts no CEL token"),
    (FUZZ_CEL_DEEP, "levels deep"),
    (LONG_CEL, f"is {len(LONG_CEL)} bytes; the limit is 4096"),
], ids=["fuzz", "fuzz-cel-chars", "long"])
def test_cel_fuzz_expression_fails_validate_only_fast(tmp_path, template, path, expr, bound):
    """The fuzz-found expression (and an over-long one) in a CEL field: `--validate-only` fails
    within a second, naming the field's YAML path and the bound, quoting the value cut short."""
    assert "'" not in expr
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(template.format(expr=expr))
    t0 = time.monotonic()
    run = subprocess.run([str(binary("gateway")), "-f", str(cfg), "--validate-only"],
                         capture_output=True, text=True, timeout=30)
    took = time.monotonic() - t0
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert took < 1.0, f"{took:.2f}s: {out}"
    quoted = expr[:20].replace('"', '\\"')
    assert f'{path}: CEL expression "{quoted}' in out, out
    assert bound in out, out
    assert len(out) < 1000, out
