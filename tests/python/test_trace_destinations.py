"""Several trace destinations at once (`config.tracing.destinations`, our extension): each has
its own endpoint, protocol, fields, filter, sampling and attribute convention, and its own
bounded queue, so a dead one never slows or empties the others. Two real rotel receivers.
"""

from __future__ import annotations

import concurrent.futures
import re
import threading
from pathlib import Path
from typing import Iterable

import pytest
import requests

from conftest import (
    CLIENT_KEY,
    CONFIG_HEAD,
    SIM_OPENAI_ROUTE,
    Rotel,
    _rotel,
    load_error,
    stop_process,
    wait_until,
)
from opskit import metric

SERVER = re.compile(r"Kind\s*:\s*SPAN_KIND_SERVER")
DROPPED = "agentgateway_tracing_spans_dropped_total"


@pytest.fixture
def two_rotels(tmp_path: Path) -> Iterable[tuple[Rotel, Rotel]]:
    gens = []
    found = []
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        g = _rotel(d, ["traces"])
        gens.append(g)
        found.append(next(g))
    try:
        yield found[0], found[1]
    finally:
        for g in gens:
            g.close()


def chat(gw, model: str = "gpt-4o-mini", session=requests) -> requests.Response:
    r = session.post(f"{gw.url}/v1/chat/completions", timeout=30,
                     headers={"authorization": f"Bearer {CLIENT_KEY}"},
                     json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    return r


def server_spans(rotel: Rotel) -> list:
    return [s for s in rotel.spans() if s.kind == "SPAN_KIND_SERVER"]


def test_each_destination_has_its_own_fields_filter_and_convention(sim, gateway_factory, two_rotels):
    a, b = two_rotels
    config = CONFIG_HEAD + """
  tracing:
    otlpEndpoint: {a}
    randomSampling: true
    fields:
      add:
        team: '"core"'
    destinations:
    - name: phoenix
      otlpEndpoint: {b}
      otlpProtocol: http
      headers: {x-tenant: blue}
      convention: openinference
      filter: 'llm.requestModel == "gpt-4o-mini"'
      fields:
        add:
          destination: '"phoenix"'
""" + SIM_OPENAI_ROUTE
    gw = gateway_factory(config, a=a.grpc_endpoint, b=b.http_endpoint)
    chat(gw, "gpt-4o-mini")
    chat(gw, "gpt-4o")
    at_a = a.wait_for_span(where=lambda s: s.kind == "SPAN_KIND_SERVER", count=2)
    at_b = b.wait_for_span(where=lambda s: s.kind == "SPAN_KIND_SERVER")
    # The primary gets both requests with the block's fields and no OpenInference names.
    assert sorted(s.attributes["gen_ai.request.model"] for s in at_a) == ["gpt-4o", "gpt-4o-mini"]
    for s in at_a:
        assert s.attributes["team"] == "core"
        assert "openinference.span.kind" not in s.attributes
        assert "destination" not in s.attributes
    # The second destination: only what its filter keeps, its own fields instead of the
    # block's, and the OpenInference names Phoenix reads.
    wait_until(lambda: len(server_spans(a)) >= 2, 5)
    spans_b = server_spans(b)
    assert len(spans_b) == 1, [s.attributes.get("gen_ai.request.model") for s in spans_b]
    sb = spans_b[0].attributes
    assert sb["destination"] == "phoenix"
    assert "team" not in sb
    assert sb["openinference.span.kind"] == "LLM"
    assert sb["llm.model_name"].startswith("gpt-4o-mini")
    assert sb["llm.provider"] == "openai"
    assert isinstance(sb["llm.token_count.prompt"], int) and sb["llm.token_count.prompt"] > 0
    assert sb["llm.token_count.total"] == sb["llm.token_count.prompt"] + sb["llm.token_count.completion"]
    # No prompt text: nothing in this config asks for it.
    assert not [k for k in sb if k.startswith("llm.input_messages")], sb
    # Both receivers got the same trace for the kept request.
    mini = next(s for s in at_a if s.attributes["gen_ai.request.model"] == "gpt-4o-mini")
    assert spans_b[0].trace_id == mini.trace_id
    assert metric(gw, DROPPED) == 0


def test_sampling_share_is_chosen_by_trace_id(sim, gateway_factory, two_rotels):
    a, b = two_rotels
    config = CONFIG_HEAD + """
  tracing:
    otlpEndpoint: {a}
    randomSampling: true
    destinations:
    - name: sampled
      otlpEndpoint: {b}
      sampling: 0.25
""" + SIM_OPENAI_ROUTE
    gw = gateway_factory(config, a=a.grpc_endpoint, b=b.grpc_endpoint)
    n = 400
    s = requests.Session()
    for _ in range(n):
        chat(gw, session=s)
    wait_until(lambda: len(server_spans(a)) >= n, 30, interval=0.3, what="every span at a")
    # b's share arrives within the exporter's flush interval; then the count is final.
    wait_until(lambda: len(server_spans(b)) > 0, 10)
    ids_b = {sp.trace_id for sp in b.spans()}
    kept = server_spans(b)
    assert 0.15 * n < len(kept) < 0.35 * n, len(kept)
    # A trace goes whole or not at all: every span of a kept trace (SERVER and CLIENT).
    clients_b = [sp for sp in b.spans() if sp.kind == "SPAN_KIND_CLIENT"]
    assert {sp.trace_id for sp in clients_b} == {sp.trace_id for sp in kept} == ids_b
    assert ids_b <= {sp.trace_id for sp in server_spans(a)}


def test_a_dead_destination_never_empties_the_other(sim, gateway_factory, two_rotels):
    a, b = two_rotels
    config = CONFIG_HEAD + """
  tracing:
    otlpEndpoint: {a}
    randomSampling: true
    destinations:
    - name: backup
      otlpEndpoint: {b}
      otlpProtocol: http
""" + SIM_OPENAI_ROUTE
    gw = gateway_factory(config, a=a.grpc_endpoint, b=b.http_endpoint)
    n = 1500
    done = 0
    lock = threading.Lock()
    killed = threading.Event()
    sessions = [requests.Session() for _ in range(12)]

    def one(i: int) -> int:
        nonlocal done
        r = chat(gw, session=sessions[i % 12])
        with lock:
            done += 1
            if done == n // 4 and not killed.is_set():
                killed.set()
                stop_process(a.proc)  # the primary receiver dies mid-run
        return r.status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(one, range(n)))
    assert killed.is_set() and a.proc.poll() is not None
    assert codes.count(200) == n
    wait_until(lambda: len(SERVER.findall(b.output())) >= n, 60, interval=0.5,
               what=f"{n} SERVER spans at the live destination")
    assert len(SERVER.findall(b.output())) == n
    assert metric(gw, DROPPED, destination="backup") == 0
    # The dead one's losses are counted under its own name.
    wait_until(lambda: metric(gw, DROPPED, destination="default") > 0, 30, interval=0.5,
               what="the dead destination's drops counted")


@pytest.mark.parametrize("dest, path, value", [
    ("{name: default, otlpEndpoint: 'http://127.0.0.1:1'}", "config.tracing.destinations[0].name", "default"),
    ("{name: 'a b', otlpEndpoint: 'http://127.0.0.1:1'}", "config.tracing.destinations[0].name", "a b"),
    ("{name: x, otlpEndpoint: 'ftp://127.0.0.1:1'}", "config.tracing.destinations[0].otlpEndpoint", "ftp://127.0.0.1:1"),
    ("{name: x, otlpEndpoint: 'http://127.0.0.1:1', sampling: 1.5}", "config.tracing.destinations[0].sampling", "1.5"),
    ("{name: x, otlpEndpoint: 'http://127.0.0.1:1', filter: 'llm.('}", "config.tracing.destinations[0].filter", "llm.("),
    ("{name: x, otlpEndpoint: 'http://127.0.0.1:1', convention: zipkin}", "convention", "zipkin"),
])
def test_bad_destinations_are_load_errors(tmp_path, dest, path, value):
    err = load_error(tmp_path, f"""
config:
  tracing:
    otlpEndpoint: http://127.0.0.1:1
    destinations: [{dest}]
binds: []
""")
    assert path in err and value in err, err
