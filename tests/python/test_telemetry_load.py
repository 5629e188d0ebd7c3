"""Tracing under load, bounded for CI: every request of a 2,000-request burst (16 clients in
parallel, 100% sampling) reaches a real OTLP receiver that keeps up (rotel), and the gateway
counts no dropped span. The throughput cost of tracing is a benchmark figure
(`cargo xtask bench`), not asserted here.
"""

from __future__ import annotations

import concurrent.futures
import re

import requests

from conftest import CLIENT_KEY, CONFIG_HEAD, SIM_OPENAI_ROUTE, wait_until
from opskit import metric

CONFIG = CONFIG_HEAD + """  tracing:
    otlpEndpoint: {otlp}
    otlpProtocol: grpc
    randomSampling: true
""" + SIM_OPENAI_ROUTE

N = 2000
SERVER = re.compile(r"Kind\s*:\s*SPAN_KIND_SERVER")


def test_a_burst_loses_no_span(sim, gateway_factory, rotel):
    gw = gateway_factory(CONFIG, otlp=rotel.grpc_endpoint)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "load"}]}
    sessions = [requests.Session() for _ in range(16)]

    def one(i: int) -> int:
        r = sessions[i % 16].post(f"{gw.url}/v1/chat/completions", json=body, timeout=30,
                                  headers={"authorization": f"Bearer {CLIENT_KEY}"})
        return r.status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(one, range(N)))
    assert codes.count(200) == N
    wait_until(lambda: len(SERVER.findall(rotel.output())) >= N, 90, interval=0.5,
               what=f"{N} SERVER spans at the receiver")
    assert len(SERVER.findall(rotel.output())) == N
    assert metric(gw, "agentgateway_tracing_spans_dropped_total") == 0
