"""Upstream and collector faults: a dead upstream is a JSON 502 in the caller's shape; a stream
that resets, turns malformed or stalls ends cleanly for the client with one access-log line
carrying an error; hundreds of such requests leak no file descriptors; and a dead OTLP
collector costs dropped spans, never a failed or slowed request.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import anthropic
import httpx2
import openai
import pytest
import requests

from conftest import CLIENT_KEY, free_port, wait_until
from opskit import (ANTHROPIC_ROUTE, CHAT, MESSAGES, OPENAI_ROUTE, Load, config, fd_count, metric,
                    ready_status)

DEAD_ROUTES = """
    - name: dead-openai
      matches: [{path: {pathPrefix: /dead-openai}}]
      backends:
      - ai: {name: dead-openai, provider: {openAI: {}}, hostOverride: "127.0.0.1:{dead_port}"}
      policies:
        backendAuth: {key: "sk-test-secret"}
    - name: dead-anthropic
      matches: [{path: {pathPrefix: /dead-anthropic}}]
      backends:
      - ai: {name: dead-anthropic, provider: {anthropic: {}}, hostOverride: "127.0.0.1:{dead_port}"}
      policies:
        backendAuth: {key: "sk-ant-test-secret"}
"""

IDLE = "  limits:\n    streamIdleTimeout: 1s\n"


def fault_gateway(gateway_factory):
    return gateway_factory(config(OPENAI_ROUTE, ANTHROPIC_ROUTE, DEAD_ROUTES, extra=IDLE), dead_port=free_port())


def test_dead_upstream_is_a_502_json_in_the_callers_shape(sim, gateway_factory):
    gw = fault_gateway(gateway_factory)
    mark = gw.log_mark()
    for stream in (False, True):
        r = requests.post(f"{gw.url}/dead-openai/v1/chat/completions", json={**CHAT, "stream": stream}, timeout=5)
        assert r.status_code == 502, r.text
        assert r.headers["content-type"].startswith("application/json")
        err = r.json()["error"]
        assert err["message"] and err["type"], err
    r = requests.post(f"{gw.url}/dead-anthropic/v1/messages", json=MESSAGES, timeout=5,
                      headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 502, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] and body["error"]["message"], body
    # The SDKs see an API error with a status, not a decoding failure.
    an = anthropic.Anthropic(base_url=f"{gw.url}/dead-anthropic", api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as e:
        an.messages.create(**MESSAGES)
    assert e.value.status_code == 502
    lines = gw.wait_for_access_log(count=4, since=mark)
    assert all(l.get("http.status") == 502 and l.get("error") for l in lines), lines
    assert ready_status(gw) == 200


@pytest.mark.parametrize("fault", ["reset", "malformed", "stall", "truncate"])
@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_broken_stream_ends_cleanly_with_one_error_line(sim, gateway_factory, fault, api):
    gw = fault_gateway(gateway_factory)
    mark = gw.log_mark()
    headers = {"x-sim-fault": fault}
    received, error = 0, None
    start = time.monotonic()
    try:
        if api == "openai":
            oa = openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
            for _ in oa.chat.completions.create(**CHAT, stream=True, extra_headers=headers):
                received += 1
        else:
            an = anthropic.Anthropic(base_url=f"{gw.url}/anthropic", api_key=CLIENT_KEY, max_retries=0, timeout=10)
            with an.messages.stream(**MESSAGES, extra_headers=headers) as s:
                for _ in s:
                    received += 1
                s.get_final_message()
    except (openai.APIError, anthropic.APIError, httpx2.HTTPError, ValueError, AssertionError) as e:
        error = e
    took = time.monotonic() - start
    assert took < 5, f"the client waited {took:.1f}s"
    assert received > 0, f"the first half of the stream should arrive ({error!r})"
    [line] = gw.wait_for_access_log(since=mark)
    assert line.get("error"), f"{fault}: the access-log line must say what went wrong: {line}"
    assert line.get("http.status") == 200  # the status went out before the fault
    time.sleep(0.3)
    assert len(gw.access_log(since=mark)) == 1, "exactly one line per request"
    assert ready_status(gw) == 200
    assert requests.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, timeout=5).status_code == 200


def disconnect_mid_stream(gw) -> None:
    """Starts a slow stream on a raw connection, reads its first bytes, and hangs up."""
    body = json.dumps({**CHAT, "stream": True}).encode()
    head = (b"POST /openai/v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            b"x-sim-chunk-delay-ms: 100\r\ncontent-length: %d\r\n\r\n" % len(body))
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(head + body)
        assert s.recv(1024).startswith(b"HTTP/1.1 200")


def test_no_fd_leak_after_many_failures_and_disconnects(sim, gateway_factory):
    gw = fault_gateway(gateway_factory)
    pid = gw.proc.pid
    url = f"{gw.url}/openai/v1/chat/completions"

    def one(kind: str) -> None:
        if kind == "ok":
            requests.post(url, json=CHAT, timeout=5)
        elif kind == "stream":
            requests.post(url, json={**CHAT, "stream": True}, timeout=5).content
        elif kind == "500":
            requests.post(url, json=CHAT, headers={"x-sim-fault": "500"}, timeout=5)
        elif kind == "dead":
            requests.post(f"{gw.url}/dead-openai/v1/chat/completions", json=CHAT, timeout=5)
        elif kind in ("reset", "malformed", "truncate"):
            try:
                requests.post(url, json={**CHAT, "stream": True}, headers={"x-sim-fault": kind}, timeout=5).content
            except requests.RequestException:
                pass
        elif kind == "stall":
            try:
                requests.post(url, json={**CHAT, "stream": True}, headers={"x-sim-fault": "stall"}, timeout=5).content
            except requests.RequestException:
                pass
        elif kind == "disconnect":
            disconnect_mid_stream(gw)
        elif kind == "bad":
            requests.post(url, data=b"{", timeout=5)

    for kind in ("ok", "stream", "500", "dead", "disconnect"):  # warm up pools and lazy state
        one(kind)
    time.sleep(0.5)
    baseline = fd_count(pid)
    kinds = ["ok"] * 60 + ["stream"] * 40 + ["500"] * 20 + ["dead"] * 20 + ["reset"] * 15 + \
        ["malformed"] * 10 + ["truncate"] * 10 + ["bad"] * 10 + ["disconnect"] * 12 + ["stall"] * 3
    assert len(kinds) == 200
    for i, kind in enumerate(kinds):
        one(kind)
    assert gw.alive()
    # Connections the clients closed are reaped promptly.
    try:
        wait_until(lambda: fd_count(pid) <= baseline + 8, 10, interval=0.25, what="fd count back near baseline")
    except TimeoutError:
        raise AssertionError(f"fds: baseline {baseline}, now {fd_count(pid)}: "
                             f"{sorted(os.readlink(f'/proc/{pid}/fd/{f}') for f in os.listdir(f'/proc/{pid}/fd'))}") from None
    assert ready_status(gw) == 200


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_killing_the_collector_fails_no_request(sim, gateway_factory, rotel, protocol):
    endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
    tracing = f"""
  tracing:
    otlpEndpoint: {endpoint}
    otlpProtocol: {protocol}
    randomSampling: true
"""
    gw = gateway_factory(config(OPENAI_ROUTE, extra=tracing))
    latencies: list[float] = []

    def send(s):
        t = time.monotonic()
        r = s.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, timeout=5)
        latencies.append(time.monotonic() - t)
        return r

    with Load(send, pause=0.02) as load:
        rotel.wait_for_span("POST /openai/v1/chat/completions", count=3)
        os.kill(rotel.proc.pid, signal.SIGKILL)
        rotel.proc.wait(timeout=5)
        killed_at = len(latencies)
        wait_until(lambda: metric(gw, "agentgateway_tracing_spans_dropped_total") > 0, 20, interval=0.25,
                   what="spans_dropped_total to rise")
        after = load.ok
        wait_until(lambda: load.ok >= after + 20, 10, what="load continuing")
    assert load.failures == [], f"{len(load.failures)} request(s) failed: {load.failures[:3]}"
    slowest = max(latencies[killed_at:])
    assert slowest < 1.0, f"a request took {slowest:.2f}s while the collector was down"
    assert gw.alive() and ready_status(gw) == 200
