"""Routing that survives provider failures, through the openai and anthropic SDKs: virtual
models (failover, weighted, conditional as in agentgateway's ``examples/llm-cost-routing``),
passive health with ejection and probing back, ``retry`` on a route, and what each attempt
leaves in spans (a real rotel), the access log and ``/metrics``.

The failing primaries are the simulator's own faults, chosen by the model name the entry sends
(``fault-500-gpt-4o``); ``x-sim-fault-times: N`` makes a fault stop after N requests.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter

import anthropic
import openai
import pytest
import requests

from conftest import CONFIG_HEAD, free_port, load_error, wait_until
from opskit import metric

KEY = "sk-test-secret"
MSG = [{"role": "user", "content": "hello"}]


def model(name: str, upstream_model: str, extra: str = "", provider: str = "openAI",
          host: str = "{sim}") -> str:
    return f"""  - name: {name}
    provider: {provider}
    params: {{hostOverride: "{host}", apiKey: "{KEY}", model: "{upstream_model}"}}
{extra}"""


def failover(name: str, first: str, then: str = "secondary") -> str:
    return f"""  - name: {name}
    routing:
      failover:
        targets:
        - {{model: {first}, priority: 0}}
        - {{model: {then}, priority: 1}}
"""


ROUTING = CONFIG_HEAD + """llm:
  port: {port}
  policies:
    timeout: {backendRequestTimeout: 1s}
  models:
""" + model("primary", "fault-500-gpt-4o", "    visibility: internal\n    health: {eviction: {duration: 1s, consecutiveFailures: 2}}\n") \
    + model("secondary", "gpt-4o-mini", "    visibility: internal\n") \
    + model("flaky", "fault-503-gpt-4o", "    health: {eviction: {duration: 1s, consecutiveFailures: 2}}\n") \
    + model("refused", "gpt-4o", host="127.0.0.1:{dead_port}") \
    + model("throttled", "fault-429-gpt-4o") \
    + model("hangup", "gpt-4o", host="127.0.0.1:{hangup_port}") \
    + model("stalled", "fault-slow-gpt-4o") \
    + model("w-a", "gpt-4o") \
    + model("w-b", "gpt-4o-mini") \
    + model("claude-down", "fault-529-claude-sonnet-4-5", provider="anthropic") \
    + model("claude-up", "claude-haiku-4-5", provider="anthropic") \
    + "  virtualModels:\n" \
    + failover("resilient", "primary") + failover("comes-back", "flaky") \
    + failover("unreachable-first", "refused") + failover("throttled-first", "throttled") \
    + failover("hangup-first", "hangup") + failover("stalled-first", "stalled") \
    + """  - name: split
    routing:
      weighted:
        targets:
        - {model: w-a, weight: 3}
        - {model: w-b, weight: 1}
""" + failover("claude", "claude-down", "claude-up") + """  - name: gpt-4o
    routing:
      weighted:
        targets:
        - {model: w-a, weight: 1}
"""


@pytest.fixture
def hangup_port():
    """An upstream that reads each request and closes the connection without an answer."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                except OSError:
                    pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(5)
    srv.close()


@pytest.fixture
def gw(sim, gateway_factory, hangup_port):
    return gateway_factory(ROUTING, dead_port=free_port(), hangup_port=hangup_port)


def base(served: str) -> str:
    """The model a response names, without the simulator's snapshot suffix (a provider answers
    ``gpt-4o-mini-2024-07-18`` for ``gpt-4o-mini``; the simulator ``gpt-4o-mini-sim-2024``)."""
    return re.sub(r"-sim-\d+$", "", served)


def client(gw) -> openai.OpenAI:
    # No SDK retries: every success below is the gateway's doing.
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="client", max_retries=0, timeout=20)


def test_a_target_that_keeps_the_clients_model_forwards_the_clients_bytes(sim, gw):
    """A virtual model named like its target's provider model: nothing in the body changes, so
    the client's own bytes go upstream (not a re-serialisation)."""
    raw = b'{ "model" :  "gpt-4o",\n  "messages": [ {"role": "user", "content": "hi"} ] }'
    r = requests.post(f"{gw.url}/v1/chat/completions", data=raw, timeout=10,
                      headers={"content-type": "application/json", "authorization": "Bearer client"})
    assert r.status_code == 200 and r.headers["x-gateway-target"] == "w-a", r.text
    sent = sim.requests("openai.chat")[-1]
    assert sent["headers"]["content-length"] == str(len(raw)), "the body was re-serialised"
    # A target whose model differs rewrites the model (and so the body).
    requests.post(f"{gw.url}/v1/chat/completions", data=raw.replace(b'"gpt-4o"', b'"split"'), timeout=10,
                  headers={"content-type": "application/json", "authorization": "Bearer client"})
    sent = sim.requests("openai.chat")[-1]
    assert sent["body"]["model"] in ("gpt-4o", "gpt-4o-mini")
    compact = json.dumps({"model": sent["body"]["model"], "messages": [{"role": "user", "content": "hi"}]},
                         separators=(",", ":"))
    assert sent["headers"]["content-length"] == str(len(compact))


def test_failover_serves_every_request_and_ejects_the_failing_primary(sim, gw):
    oa = client(gw)
    for i in range(6):
        raw = oa.chat.completions.with_raw_response.create(model="resilient", messages=MSG)
        r = raw.parse()
        assert base(r.model) == "gpt-4o-mini" and r.choices[0].message.content
        assert raw.headers["x-gateway-virtual-model"] == "resilient"
        assert raw.headers["x-gateway-target"] == "secondary"
        assert raw.headers.get("x-gateway-attempts") == ("2" if i < 2 else None)
    upstream = [q["body"].get("model") for q in sim.requests("openai.chat")]
    # Two failures eject the primary (consecutiveFailures: 2); then only the secondary.
    assert upstream == ["fault-500-gpt-4o", "gpt-4o-mini", "fault-500-gpt-4o", "gpt-4o-mini",
                        "gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini"], upstream
    lines = gw.wait_for_access_log(6, where=lambda l: l.get("llm.virtual_model") == "resilient")
    assert [l["llm.attempts"] for l in lines] == [2, 2, 1, 1, 1, 1], lines
    assert lines[0]["llm.retried"] == "primary: status 500"
    assert all(l["llm.target"] == "secondary" and l["llm.routing"] == "failover" for l in lines)
    assert lines[1]["llm.ejected"] == "primary"
    assert metric(gw, "agentgateway_upstream_retries_total", backend="primary", reason="status 500") == 2
    assert metric(gw, "agentgateway_llm_failovers_total", virtual_model="resilient",
                  **{"from": "primary", "to": "secondary"}) == 2
    assert metric(gw, "agentgateway_upstream_ejections_total", backend="primary") == 1


def test_an_ejected_backend_is_probed_back(sim, gw):
    oa = client(gw)
    faults = {"x-sim-fault-times": "2"}
    for _ in range(2):
        r = oa.chat.completions.create(model="comes-back", messages=MSG, extra_headers=faults)
        assert base(r.model) == "gpt-4o-mini"
    # Ejected for 1 s: the primary is not asked meanwhile.
    r = oa.chat.completions.create(model="comes-back", messages=MSG, extra_headers=faults)
    assert base(r.model) == "gpt-4o-mini"
    assert [q["body"]["model"] for q in sim.requests("openai.chat")].count("fault-503-gpt-4o") == 2
    time.sleep(1.2)
    # Back from ejection, the next request probes it; its fault is spent, so it answers.
    r = oa.chat.completions.create(model="comes-back", messages=MSG, extra_headers=faults)
    assert base(r.model) == "fault-503-gpt-4o", "the recovered primary serves again"
    line = gw.wait_for_access_log(4, where=lambda l: l.get("llm.virtual_model") == "comes-back")[-1]
    assert line["llm.target"] == "flaky" and line["llm.attempts"] == 1


@pytest.mark.parametrize("vm,reason", [("unreachable-first", "connection failed"),
                                       ("hangup-first", "connection error"),
                                       ("stalled-first", "timeout"),
                                       ("throttled-first", "status 429")])
def test_refused_dropped_and_stalled_connections_and_429_fail_over(sim, gw, vm, reason):
    oa = client(gw)
    r = oa.chat.completions.create(model=vm, messages=MSG)
    assert base(r.model) == "gpt-4o-mini"
    [line] = gw.wait_for_access_log(1, where=lambda l: l.get("llm.virtual_model") == vm)
    assert line["llm.retried"].endswith(reason) and line["http.status"] == 200, line


def test_a_stream_fails_over_before_its_first_byte(sim, gw):
    oa = client(gw)
    stream = oa.chat.completions.create(model="throttled-first", messages=MSG, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text, "the secondary's stream reached the client"
    [line] = gw.wait_for_access_log(1, where=lambda l: l.get("llm.virtual_model") == "throttled-first")
    assert line["llm.attempts"] == 2 and line["llm.target"] == "secondary"


def test_anthropic_clients_fail_over_too(sim, gw):
    an = anthropic.Anthropic(base_url=gw.url, api_key="client", max_retries=0, timeout=20)
    m = an.messages.create(model="claude", max_tokens=32, messages=MSG)
    assert base(m.model) == "claude-haiku-4-5" and m.content[0].text
    [line] = gw.wait_for_access_log(1, where=lambda l: l.get("llm.virtual_model") == "claude")
    assert line["llm.retried"] == "claude-down: status 529"


def test_weighted_split_follows_the_weights(sim, gw):
    oa = client(gw)
    got = Counter(base(oa.chat.completions.create(model="split", messages=MSG, max_tokens=1).model)
                  for _ in range(1000))
    # 3:1 → 750; binomial σ ≈ 13.7, so ±40 is about 3σ.
    assert 710 <= got["gpt-4o"] <= 790 and got["gpt-4o"] + got["gpt-4o-mini"] == 1000, got


def test_model_list_shows_virtual_and_public_models_and_hides_internal_ones(sim, gw):
    ids = {m.id for m in client(gw).models.list()}
    assert {"resilient", "split", "claude", "flaky", "w-a"} <= ids
    assert not {"primary", "secondary"} & ids
    with pytest.raises(openai.NotFoundError):
        client(gw).chat.completions.create(model="secondary", messages=MSG)


# agentgateway's examples/llm-cost-routing/config.yaml, with the simulator as the provider.
COST_ROUTING = CONFIG_HEAD + """llm:
  port: {port}
  models:
  - name: economy-model
    visibility: internal
    provider: openAI
    params:
      model: gpt-4o-mini
      apiKey: "replace-me"
      baseUrl: {sim_url}/v1
  - name: balanced-model
    visibility: internal
    provider: openAI
    params:
      model: gpt-4o
      apiKey: "replace-me"
      baseUrl: {sim_url}/v1
  - name: premium-model
    visibility: internal
    provider: openAI
    params:
      model: gpt-4.1
      apiKey: "replace-me"
      baseUrl: {sim_url}/v1
  virtualModels:
  - name: smart-model
    routing:
      conditional:
        targets:
        - when: 'default(llmRequest.metadata.cost_tier, "") == "economy" || (default(llmRequest.metadata.cost_tier, "") == "" && default(llmRequest.max_tokens, 1024) <= 1024)'
          model: economy-model
        - when: 'default(llmRequest.metadata.cost_tier, "") == "balanced" || (default(llmRequest.metadata.cost_tier, "") == "" && default(llmRequest.max_tokens, 1024) <= 4096)'
          model: balanced-model
        - model: premium-model
"""


def test_conditional_routing_as_in_the_cost_routing_example(sim, gateway_factory):
    gw = gateway_factory(COST_ROUTING)
    oa = client(gw)

    def served(**kw) -> str:
        return base(oa.chat.completions.create(model="smart-model", messages=MSG, **kw).model)

    assert served() == "gpt-4o-mini"
    assert served(max_tokens=2000) == "gpt-4o"
    assert served(max_tokens=9000) == "gpt-4.1"
    assert served(max_tokens=9000, metadata={"cost_tier": "economy"}) == "gpt-4o-mini"
    assert served(metadata={"cost_tier": "premium"}) == "gpt-4.1"
    lines = gw.wait_for_access_log(5, where=lambda l: l.get("llm.virtual_model") == "smart-model")
    assert [l["llm.target"] for l in lines] == ["economy-model", "balanced-model", "premium-model",
                                               "economy-model", "premium-model"]
    assert all(l["llm.routing"] == "conditional" for l in lines)


RETRY_ROUTE = CONFIG_HEAD + """binds:
- port: {port}
  listeners:
  - routes:
    - backends: [{ai: {name: oa, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        timeout: {backendRequestTimeout: 500ms}
        retry: {attempts: 3, backoff: 50ms, codes: [503]}
"""


def test_route_retry_recovers_from_a_stall_and_a_503(sim, gateway_factory):
    gw = gateway_factory(RETRY_ROUTE)
    oa = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="client", max_retries=0, timeout=20)
    # A stall past the timeout, then an answer.
    r = oa.chat.completions.create(model="gpt-4o", messages=MSG, extra_headers={
        "x-sim-fault": "slow", "x-sim-delay-ms": "3000", "x-sim-fault-times": "1"})
    assert r.choices[0].message.content
    # Two 503s, then an answer: three attempts.
    r = oa.chat.completions.create(model="gpt-4o", messages=MSG, extra_headers={
        "x-sim-fault": "503", "x-sim-fault-times": "2"})
    assert r.choices[0].message.content
    # A code the policy does not list is not retried.
    with pytest.raises(openai.InternalServerError):
        oa.chat.completions.create(model="gpt-4o", messages=MSG, extra_headers={"x-sim-fault": "500"})
    lines = gw.wait_for_access_log(3)
    assert lines[0]["llm.attempts"] == 2 and lines[0]["llm.retried"] == "oa: timeout"
    assert lines[1]["llm.attempts"] == 3 and lines[1]["llm.retried"] == "oa: status 503, oa: status 503"
    assert "llm.attempts" not in lines[2] and lines[2]["http.status"] == 500


def test_every_attempt_is_its_own_client_span(sim, gateway_factory, rotel, hangup_port):
    traced = ROUTING.replace("  adminAddr: 127.0.0.1:{admin_port}\n",
                             "  adminAddr: 127.0.0.1:{admin_port}\n  tracing:\n"
                             "    otlpEndpoint: {otlp}\n    randomSampling: true\n", 1)
    gw = gateway_factory(traced, dead_port=free_port(), otlp=rotel.grpc_endpoint, hangup_port=hangup_port)
    client(gw).chat.completions.create(model="resilient", messages=MSG)
    [server] = rotel.wait_for_span(where=lambda s: s.kind == "SPAN_KIND_SERVER"
                                   and s.attributes.get("llm.virtual_model") == "resilient")
    assert server.attributes["gen_ai.request.model"] == "resilient"
    assert base(server.attributes["gen_ai.response.model"]) == "gpt-4o-mini"
    assert server.attributes["llm.attempts"] == 2 and server.attributes["llm.target"] == "secondary"

    def attempts():
        spans = [s for s in rotel.spans() if s.kind == "SPAN_KIND_CLIENT"
                 and s.trace_id == server.trace_id and "llm.attempt" in s.attributes]
        return spans if len(spans) == 2 else None

    first, second = sorted(wait_until(attempts, 10, what="two attempt spans"),
                           key=lambda s: s.attributes["llm.attempt"])
    assert first.parent_id == server.span_id and second.parent_id == server.span_id
    assert first.attributes["llm.target"] == "primary"
    assert first.attributes["http.response.status_code"] == 500
    assert first.attributes["error.type"] == "status 500" and "ERROR" in first.status
    assert second.attributes["llm.target"] == "secondary" and second.attributes["llm.attempt"] == 2
    # Each attempt carried its own trace context upstream.
    parents = [q["headers"].get("traceparent", "").split("-")[2] for q in sim.requests("openai.chat")]
    assert parents == [first.span_id, second.span_id]


@pytest.mark.parametrize("block,path", [
    ("  virtualModels:\n  - name: v\n    routing: {weighted: {targets: [{model: nope}]}}\n",
     "llm.virtualModels[0].routing.weighted.targets[0].model"),
    ("  virtualModels:\n  - name: v\n    routing: {conditional: {targets: [{model: a, when: 'true'}, {model: a, when: 'false'}]}}\n",
     "llm.virtualModels[0].routing.conditional.targets[1].when"),
    ("  virtualModels:\n  - name: v\n    routing: {weighted: {targets: [{model: a, weight: 0}]}}\n",
     "llm.virtualModels[0].routing.weighted.targets"),
    ("  virtualModels:\n  - name: a\n    routing: {weighted: {targets: [{model: a}]}}\n",
     "llm.virtualModels[0].name"),
    ("  models:\n  - name: b\n    provider: openAI\n    health: {eviction: {healthThreshold: 2}}\n",
     "llm.models[0].health.eviction.healthThreshold"),
])
def test_bad_routing_config_names_the_path(tmp_path, block, path):
    text = "llm:\n  models:\n  - name: a\n    provider: openAI\n" + block
    text = text.replace("  models:\n  - name: a\n    provider: openAI\n  models:\n", "  models:\n")
    err = load_error(tmp_path, text)
    assert path in err, err


def test_llm_policies_retry_retries_a_plain_model(sim, gateway_factory):
    gw = gateway_factory(CONFIG_HEAD + """llm:
  port: {port}
  policies:
    retry: {attempts: 2, codes: [503]}
  models:
""" + model("gpt-4o", "gpt-4o"))
    r = client(gw).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MSG, extra_headers={"x-sim-fault": "503", "x-sim-fault-times": "1"})
    assert r.parse().choices[0].message.content and r.headers["x-gateway-attempts"] == "2"
    assert "x-gateway-virtual-model" not in r.headers


def test_bad_retry_names_the_path(tmp_path):
    err = load_error(tmp_path, "llm:\n  policies:\n    retry: {attempts: 300, codes: [503]}\n  models: []\n")
    assert "llm.policies.retry.attempts" in err, err
    err = load_error(tmp_path, """binds:
- port: 1
  listeners:
  - routes:
    - backends: [{ai: {name: oa, provider: {openAI: {}}}}]
      policies:
        retry: {attempts: 0, codes: [503]}
""")
    assert "binds[0].listeners[0].routes[0].policies.retry.attempts" in err, err


WEIGHTED_ROUTE = CONFIG_HEAD + """binds:
- port: {port}
  listeners:
  - routes:
    - backends:
      - ai: {name: bad, provider: {openAI: {model: fault-500-gpt-4o}}, hostOverride: "{sim}"}
        policies: {health: {eviction: {duration: 60s, consecutiveFailures: 1}}}
      - ai: {name: good, provider: {openAI: {model: gpt-4o-mini}}, hostOverride: "{sim}"}
      policies: {backendAuth: {key: "sk-test-secret"}}
"""


def test_route_backends_skip_an_ejected_backend(sim, gateway_factory):
    gw = gateway_factory(WEIGHTED_ROUTE)
    oa = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="client", max_retries=0, timeout=20)
    failures = 0
    for _ in range(40):
        try:
            oa.chat.completions.create(model="gpt-4o", messages=MSG)
        except openai.InternalServerError:
            failures += 1
    # One failure ejects `bad` for 60 s; the weighted choice leaves it out from then on.
    assert failures == 1, failures
    assert metric(gw, "agentgateway_upstream_ejections_total", backend="bad") == 1
    bad = [q for q in sim.requests("openai.chat") if q["body"]["model"] == "fault-500-gpt-4o"]
    assert len(bad) == 1


def test_health_on_a_host_backend_is_a_load_error(tmp_path):
    err = load_error(tmp_path, """binds:
- port: 1
  listeners:
  - routes:
    - backends:
      - host: 127.0.0.1:9
        policies: {health: {eviction: {duration: 5s}}}
""")
    assert "binds[0].listeners[0].routes[0].backends[0].policies.health" in err, err


def test_route_retry_moves_to_the_routes_other_backend(sim, gateway_factory):
    gw = gateway_factory(WEIGHTED_ROUTE.replace(
        '      policies: {backendAuth: {key: "sk-test-secret"}}\n',
        '      policies: {backendAuth: {key: "sk-test-secret"}, retry: {attempts: 2, codes: [500]}}\n'))
    oa = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="client", max_retries=0, timeout=20)
    for _ in range(20):
        assert base(oa.chat.completions.create(model="gpt-4o", messages=MSG).model) == "gpt-4o-mini"
    lines = gw.wait_for_access_log(20)
    retried = [l for l in lines if "llm.retried" in l]
    # `bad` (half the weight: chosen within 20 requests but for a 2^-20 chance) answers 500
    # once, is ejected (consecutiveFailures: 1) and never chosen again; the request it failed
    # went on to `good` within the same client call.
    assert len(retried) == 1 and all(l["llm.retried"] == "bad: status 500" and l["llm.attempts"] == 2
                                     and l["llm.target"] == "good" for l in retried), retried
    bad = [q for q in sim.requests("openai.chat") if q["body"]["model"] == "fault-500-gpt-4o"]
    assert len(bad) == len(retried)
    assert all(q["headers"].get("authorization") == "Bearer sk-test-secret" for q in sim.requests("openai.chat"))
