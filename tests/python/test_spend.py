"""What requests cost: ``config.modelCatalog`` (agentgateway's catalog shape) prices every
LLM request, streams included, in decimal USD: a response header for non-streamed answers,
``agw.ai.usage.cost.*`` on the span, the access log, ``llm.cost`` in CEL, and the
``agentgateway_gen_ai_client_cost_usd_total`` / ``agentgateway_cost_catalog_lookups_total``
metrics. Checked through the openai and anthropic SDKs against the provider simulator.
"""

from __future__ import annotations

import json
from decimal import Decimal

import anthropic
import openai
import pytest

from conftest import CLIENT_KEY, load_error, wait_until
from opskit import metric

RATES = {"gpt-4o-mini": ("0.15", "0.60", "0.075"), "claude-sonnet-4-5": ("3", "15", "0.30")}

HEAD = """
config:
  readinessAddr: 127.0.0.1:{ready_port}
  statsAddr: 127.0.0.1:{stats_port}
  adminAddr: 127.0.0.1:{admin_port}
  logging:
    fields:
      add:
        cel_cost: 'default(llm.cost.total, -1.0)'
        cel_cost_cache: 'default(llm.cost.cache_read, -1.0)'
  modelCatalog:
  - inline:
      providers:
        openai:
          models:
            gpt-4o-mini: {rates: {input: "0.15", output: "0.60", cacheRead: "0.075"}}
        anthropic:
          models:
            claude-sonnet-4-5: {rates: {input: "3", output: "15", cacheRead: "0.30"}}
  - file: "{catalog}"
"""

ROUTES = """
binds:
- port: {port}
  listeners:
  - routes:
    - name: openai
      matches: [{path: {pathPrefix: /openai}}]
      backends: [{ai: {name: oa, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies: {backendAuth: {key: "sk-test-secret"}}
    - name: anthropic
      matches: [{path: {pathPrefix: /anthropic}}]
      backends: [{ai: {name: an, provider: {anthropic: {}}, hostOverride: "{sim}"}}]
      policies: {backendAuth: {key: "sk-ant-test-secret"}}
"""

TRACING = """
  tracing:
    otlpEndpoint: {otlp}
    otlpProtocol: grpc
    randomSampling: true
"""

# The file source: a model only it prices (later sources win, per rate).
FILE_CATALOG = {"providers": {"openai": {"models": {"gpt-4.1": {"rates": {"input": "2", "output": "8"}}}}}}


def expected(model: str, prompt: int, completion: int, cached: int = 0) -> Decimal:
    i, o, c = (Decimal(r) for r in RATES[model])
    return ((prompt - cached) * i + cached * c + completion * o) / Decimal(1_000_000)


@pytest.fixture
def catalog_file(tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(FILE_CATALOG))
    return path


@pytest.fixture
def gw(gateway_factory, catalog_file):
    return gateway_factory(HEAD + ROUTES, catalog=catalog_file)


def oa(gw):
    return openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0)


def test_non_streamed_cost_header_log_and_cel(sim, gw):
    mark = gw.log_mark()
    raw = oa(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "price this please"}],
        extra_headers={"x-sim-cached-tokens": "5"})
    r = raw.parse()
    want = expected("gpt-4o-mini", r.usage.prompt_tokens, r.usage.completion_tokens, cached=5)
    assert want > 0
    assert Decimal(raw.headers["x-gateway-response-cost"]) == want
    [line] = gw.wait_for_access_log(since=mark)
    # Decimal in the log line: exact, not a float sum.
    assert Decimal(str(line["agw.ai.usage.cost.total"])) == want
    assert abs(float(line["cel_cost"]) - float(want)) < 1e-12
    assert abs(float(line["cel_cost_cache"]) - 5 * 0.075 / 1e6) < 1e-15


def test_streamed_cost_is_in_the_log_and_metrics(sim, gw):
    mark = gw.log_mark()
    before = metric(gw, "agentgateway_gen_ai_client_cost_usd_total", gen_ai_request_model="gpt-4o-mini")
    chunks = list(oa(gw).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "stream a price"}], stream=True,
        stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    want = expected("gpt-4o-mini", usage.prompt_tokens, usage.completion_tokens)
    [line] = gw.wait_for_access_log(since=mark)
    assert Decimal(str(line["agw.ai.usage.cost.total"])) == want
    after = metric(gw, "agentgateway_gen_ai_client_cost_usd_total", gen_ai_request_model="gpt-4o-mini")
    assert after - before == pytest.approx(float(want), rel=1e-9)
    assert metric(gw, "agentgateway_cost_catalog_lookups_total", status="Exact") >= 1


def test_anthropic_cost_and_unpriced_models(sim, gw):
    an = anthropic.Anthropic(base_url=f"{gw.url}/anthropic", api_key=CLIENT_KEY, max_retries=0)
    raw = an.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=64,
                                               messages=[{"role": "user", "content": "hi there"}])
    m = raw.parse()
    want = expected("claude-sonnet-4-5", m.usage.input_tokens, m.usage.output_tokens)
    assert Decimal(raw.headers["x-gateway-response-cost"]) == want
    # A model no source prices: no header, no cost, counted as a miss.
    mark = gw.log_mark()
    raw = oa(gw).chat.completions.with_raw_response.create(
        model="gpt-5-unknown", messages=[{"role": "user", "content": "hi"}])
    assert "x-gateway-response-cost" not in raw.headers
    [line] = gw.wait_for_access_log(since=mark, where=lambda l: l.get("llm.request.model") == "gpt-5-unknown")
    assert "agw.ai.usage.cost.total" not in line and line["cel_cost"] == -1.0
    assert metric(gw, "agentgateway_cost_catalog_lookups_total", status="Missing",
                  gen_ai_request_model="gpt-5-unknown") == 1


def test_catalog_file_is_reloaded_on_change(sim, gw, catalog_file):
    def cost() -> Decimal | None:
        raw = oa(gw).chat.completions.with_raw_response.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
        v = raw.headers.get("x-gateway-response-cost")
        return Decimal(v) if v else None

    first = cost()
    assert first is not None and first > 0
    doubled = {"providers": {"openai": {"models": {"gpt-4.1": {"rates": {"input": "4", "output": "16"}}}}}}
    tmp = catalog_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(doubled))
    tmp.replace(catalog_file)
    wait_until(lambda: cost() == first * 2, 10, interval=0.3, what="the new prices")
    # A broken file keeps the last good prices.
    catalog_file.write_text("{not json")
    import time
    time.sleep(3)
    assert cost() == first * 2
    assert "keeping the last prices" in gw.output()


def test_cost_on_the_span(sim, gateway_factory, rotel, catalog_file):
    head = HEAD.replace("  modelCatalog:", TRACING.lstrip("\n") + "  modelCatalog:")
    gw = gateway_factory(head + ROUTES, catalog=catalog_file, otlp=rotel.grpc_endpoint)
    r = oa(gw).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "span cost"}])
    want = expected("gpt-4o-mini", r.usage.prompt_tokens, r.usage.completion_tokens)
    [span] = rotel.wait_for_span(where=lambda s: s.kind == "SPAN_KIND_SERVER"
                                 and "agw.ai.usage.cost.total" in s.attributes)
    a = span.attributes
    assert Decimal(a["agw.ai.usage.cost.total"]) == want
    assert Decimal(a["agw.ai.usage.cost.input"]) + Decimal(a["agw.ai.usage.cost.output"]) == want


@pytest.mark.parametrize("catalog,path", [
    ('[{inline: {providers: {openai: {models: {m: {rates: {input: "cheap"}}}}}}}]',
     "config.modelCatalog[0].inline.providers.openai.models.m.rates.input"),
    ('[{inline: \'{"providers": {"openai": {"models": {"m": {"rates": {"output": "-1"}}}}}}\'}]',
     "config.modelCatalog[0].inline.providers.openai.models.m.rates.output"),
    ('[{inline: {providers: {openai: {models: {m: {rates: {inptu: "1"}}}}}}}]',
     "config.modelCatalog[0].inline.providers.openai.models.m.rates.inptu"),
])
def test_bad_catalog_is_a_load_error_naming_the_path(tmp_path, catalog, path):
    err = load_error(tmp_path, f"config:\n  modelCatalog: {catalog}\n")
    assert path in err, err
