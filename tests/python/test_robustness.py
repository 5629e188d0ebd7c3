"""Secrets never leave the gateway (logs at debug level, JSON access log, spans in a real OTLP
receiver, /metrics, /config_dump), and the request limits of ``config.limits`` answer with
clear, API-shaped JSON errors or close abusive connections.
"""

from __future__ import annotations

import socket
import subprocess
import time

import anthropic
import httpx2
import openai
import requests

from conftest import CLIENT_KEY, binary, wait_until
from opskit import ANTHROPIC_ROUTE, CHAT, MESSAGES, OPENAI_ROUTE, config, metrics_text, rewrite

OTLP_AUTH = "Bearer otlp-collector-secret-5"
ANTHROPIC_CLIENT_KEY = "sk-ant-client-key-must-not-leak-6"
GOOG_CLIENT_KEY = "goog-client-key-must-not-leak-7"
COOKIE = "session=cookie-must-not-leak-8"
TENANT_TOKEN = "tenant-token-must-not-leak-9"  # a custom header listed in config.sensitiveHeaders
BACKEND_KEYS = ("sk-test-secret", "sk-ant-test-secret")
ALL_SECRETS = BACKEND_KEYS + (CLIENT_KEY, OTLP_AUTH, "otlp-collector-secret-5", ANTHROPIC_CLIENT_KEY,
                              GOOG_CLIENT_KEY, "cookie-must-not-leak-8", TENANT_TOKEN)

SECRETS_TELEMETRY = f"""
  sensitiveHeaders: [X-Tenant-Token]
  logging:
    level: debug
    format: json
    fields:
      add:
        auth: 'request.headers["authorization"]'
        apikey: 'request.headers["x-api-key"]'
        every_header: 'request.headers'
  tracing:
    otlpEndpoint: {{otlp}}
    otlpProtocol: grpc
    headers:
      Authorization: "{OTLP_AUTH}"
    randomSampling: true
    fields:
      add:
        client.auth: 'request.headers["authorization"]'
        client.apikey: 'request.headers["x-api-key"]'
        client.goog: 'request.headers["x-goog-api-key"]'
        client.cookie: 'request.headers["cookie"]'
        client.headers: 'request.headers'
        client.ua: 'request.headers["user-agent"]'
        client.tenant: 'request.headers["x-tenant-token"]'
"""


def test_secrets_appear_nowhere(sim, gateway_factory, rotel, monkeypatch):
    monkeypatch.delenv("RUST_LOG", raising=False)  # config.logging.level: debug must apply
    gw = gateway_factory(config(OPENAI_ROUTE, ANTHROPIC_ROUTE, extra=SECRETS_TELEMETRY), otlp=rotel.grpc_endpoint)
    oa = openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0)
    an = anthropic.Anthropic(base_url=f"{gw.url}/anthropic", api_key=ANTHROPIC_CLIENT_KEY, max_retries=0)
    oa.chat.completions.create(**CHAT)
    for _ in oa.chat.completions.create(**CHAT, stream=True):
        pass
    an.messages.create(**MESSAGES)
    with an.messages.stream(**MESSAGES) as s:
        s.get_final_message()
    # Every credential header at once, on a success, a client error and an upstream error.
    headers = {"authorization": f"Bearer {CLIENT_KEY}", "x-api-key": ANTHROPIC_CLIENT_KEY,
               "x-goog-api-key": GOOG_CLIENT_KEY, "cookie": COOKIE, "x-tenant-token": TENANT_TOKEN}
    assert requests.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, headers=headers, timeout=5).status_code == 200
    assert requests.post(f"{gw.url}/openai/v1/chat/completions", data=b"{", headers=headers, timeout=5).status_code == 400
    assert requests.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, timeout=5,
                         headers={**headers, "x-sim-fault": "500"}).status_code == 500
    assert requests.post(f"{gw.url}/nowhere", json=CHAT, headers=headers, timeout=5).status_code == 404

    # The fields were evaluated (so the absence of secrets below means something): the whole
    # header map is exported, credentials are left out of it or shown as <redacted>.
    spans = rotel.wait_for_span(where=lambda s: "client.ua" in s.attributes, count=8)
    for s in spans:
        assert '"user-agent"' in s.attributes.get("client.headers", ""), s.attributes
        for key in ("client.auth", "client.apikey", "client.goog", "client.cookie", "client.tenant"):
            assert s.attributes.get(key) in (None, "<redacted>"), (key, s.attributes)
    lines = gw.wait_for_access_log(count=8)
    assert all("every_header" in l for l in lines), lines[0]
    assert all(l.get("auth") in (None, "<redacted>") for l in lines)
    # ...and the debug-level process log saw the requests.
    assert any('"level":"DEBUG"' in l for l in gw.stdout().splitlines())

    dump = requests.get(f"http://127.0.0.1:{gw.admin_port}/config_dump", timeout=5).text
    places = {"stdout": gw.stdout(), "stderr": gw.stderr(), "rotel": rotel.output(),
              "/metrics": metrics_text(gw), "/config_dump": dump}
    for where, text in places.items():
        for secret in ALL_SECRETS:
            assert secret not in text, f"{where} contains a secret ({secret[:10]}...)"
    # The backend really received the configured keys, never the client's.
    for r in sim.requests():
        assert CLIENT_KEY not in str(r["headers"]) and ANTHROPIC_CLIENT_KEY not in str(r["headers"])


# === limits ===

LIMITS = """
  limits:
    maxRequestBodyBytes: 2048
    maxHeaders: 20
    headerReadTimeout: 1s
    streamIdleTimeout: 1s
"""


def limits_gateway(gateway_factory):
    return gateway_factory(config(OPENAI_ROUTE, ANTHROPIC_ROUTE, extra=LIMITS))


def big_chat() -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 4096}]}


def test_body_over_the_limit_is_413_json_in_the_api_shape(sim, gateway_factory):
    gw = limits_gateway(gateway_factory)
    mark = gw.log_mark()
    r = requests.post(f"{gw.url}/openai/v1/chat/completions", json=big_chat(), timeout=5)
    assert r.status_code == 413, r.text
    err = r.json()["error"]
    assert "2048" in err["message"] and err["type"], err
    big_messages = {**MESSAGES, "messages": [{"role": "user", "content": "x" * 4096}]}
    r = requests.post(f"{gw.url}/anthropic/v1/messages", json=big_messages, timeout=5,
                      headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 413, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] and "2048" in body["error"]["message"], body

    # Chunked (no content-length): the limit is enforced while reading.
    def chunks():
        for _ in range(8):
            yield b" " * 1024
        yield b'{"model": "gpt-4o-mini", "messages": []}'
    r = requests.post(f"{gw.url}/openai/v1/chat/completions", data=chunks(), timeout=5,
                      headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert r.json()["error"]["message"]
    assert sim.requests() == [], "an oversized body must not reach the provider"
    lines = gw.wait_for_access_log(count=3, since=mark)
    assert [l.get("http.status") for l in lines] == [413, 413, 413]
    # Under the limit is fine.
    assert requests.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, timeout=5).status_code == 200


def test_the_openai_sdk_sees_a_413_as_an_api_error(sim, gateway_factory):
    gw = limits_gateway(gateway_factory)
    oa = openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0)
    try:
        oa.chat.completions.create(**big_chat())
    except openai.APIStatusError as e:
        assert e.status_code == 413
        assert isinstance(e.body, dict) and "2048" in e.body.get("message", ""), e.body
    else:
        raise AssertionError("an oversized request succeeded")


def raw_request(gw, head: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Sends ``head`` on a fresh connection; returns everything read until the server closes
    (or ``timeout``), and how long that took."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=timeout) as s:
        s.sendall(head)
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        except socket.timeout:
            got += b"<still open>"
    return got, time.monotonic() - start


def test_too_many_headers_is_431_or_a_closed_connection(sim, gateway_factory):
    gw = limits_gateway(gateway_factory)
    extra = "".join(f"x-filler-{i}: {i}\r\n" for i in range(40))
    head = (f"POST /openai/v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            f"content-length: 2\r\n{extra}connection: close\r\n\r\n{{}}").encode()
    got, _ = raw_request(gw, head)
    assert b"<still open>" not in got
    assert got == b"" or got.startswith(b"HTTP/1.1 431"), got[:200]
    assert sim.requests() == []
    # Under the limit: served.
    few = {f"x-filler-{i}": str(i) for i in range(10)}
    assert requests.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, headers=few, timeout=5).status_code == 200


def test_slow_header_read_closes_the_connection(sim, gateway_factory):
    gw = limits_gateway(gateway_factory)
    # Half a request head, then silence (slowloris).
    got, took = raw_request(gw, b"POST /openai/v1/chat/completions HTTP/1.1\r\nhost: gw\r\n", timeout=6)
    assert b"<still open>" not in got, "the connection outlived headerReadTimeout"
    assert 0.8 <= took < 3.0, f"closed after {took:.2f}s, headerReadTimeout is 1s"
    assert got == b"" or got.startswith(b"HTTP/1.1 408"), got[:200]
    assert requests.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, timeout=5).status_code == 200


def test_stalled_upstream_stream_ends_at_the_idle_timeout(sim, gateway_factory):
    gw = limits_gateway(gateway_factory)
    mark = gw.log_mark()
    oa = openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)
    start = time.monotonic()
    got, error = [], None
    try:
        for chunk in oa.chat.completions.create(**CHAT, stream=True, extra_headers={"x-sim-fault": "stall"}):
            got.append(chunk)
    except (openai.APIError, httpx2.HTTPError) as e:
        error = e
    took = time.monotonic() - start
    assert got, "the first half of the stream should have arrived"
    assert 0.9 <= took < 4.0, f"stream ended after {took:.2f}s (streamIdleTimeout 1s); error={error!r}"
    [line] = gw.wait_for_access_log(since=mark)
    assert "idle" in line.get("error", ""), line
    assert requests.get(f"http://127.0.0.1:{gw.ready_port}/healthz/ready", timeout=2).status_code == 200


def test_stalled_upstream_body_does_not_hang_a_buffered_request(sim, gateway_factory):
    """A non-streamed response whose body stalls halfway: the gateway buffers it (to count
    tokens or translate), so it must give up rather than hold the client forever."""
    gw = limits_gateway(gateway_factory)
    mark = gw.log_mark()
    start = time.monotonic()
    try:
        r = requests.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, timeout=10,
                          headers={"x-sim-fault": "stall"})
        status = r.status_code
    except requests.RequestException as e:
        status = repr(e)
    took = time.monotonic() - start
    assert took < 4.0, f"a stalled body held the request for {took:.1f}s (streamIdleTimeout 1s)"
    assert status in (502, 504), status
    [line] = gw.wait_for_access_log(since=mark)
    assert line.get("error"), line


# (body, what, rejected by the gateway itself). An empty body is forwarded (the provider
# answers 400, which the gateway renders in the caller's shape).
MALFORMED = [
    (b"{not json", "invalid json", True),
    (b'["a", "list"]', "not an object", True),
    (b'"just a string"', "a JSON string", True),
    (b"", "empty body", False),
]


def test_malformed_bodies_get_400_in_the_callers_shape(sim, gateway_factory):
    gw = gateway_factory(config(OPENAI_ROUTE, ANTHROPIC_ROUTE, """
    - name: oa2an
      matches: [{path: {pathPrefix: /oa2an}}]
      backends:
      - ai: {name: anthropic-for-openai-clients, provider: {anthropic: {}}, hostOverride: "{sim}"}
      policies:
        backendAuth: {key: "sk-ant-test-secret"}
"""))
    for body, what, local in MALFORMED:
        sim.reset()
        for path in ("/openai/v1/chat/completions", "/oa2an/v1/chat/completions"):
            r = requests.post(f"{gw.url}{path}", data=body, headers={"content-type": "application/json"}, timeout=5)
            assert r.status_code == 400, (path, what, r.text)
            err = r.json().get("error")
            assert isinstance(err, dict) and err.get("message") and err.get("type") == "invalid_request_error", (path, what, r.text)
        r = requests.post(f"{gw.url}/anthropic/v1/messages", data=body, timeout=5,
                          headers={"content-type": "application/json", "anthropic-version": "2023-06-01"})
        assert r.status_code == 400, (what, r.text)
        j = r.json()
        assert j.get("type") == "error" and j["error"]["type"] == "invalid_request_error" and j["error"]["message"], (what, j)
        reached = [(r["endpoint"], r.get("body_text"), r.get("status")) for r in sim.requests()]
        assert not local or reached == [], f"{what}: reached the provider: {reached}"
    wait_until(lambda: len(gw.access_log()) >= 3 * len(MALFORMED), 5, what="access-log lines")


def test_a_rejected_config_never_echoes_a_secret(sim, gateway_factory):
    """A typo under a credential field (``backendAuth: "sk-..."`` without ``key:``) is a config
    error; its message names the path, not the value, since a failed reload goes to the log."""
    leaked = "sk-live-typo-must-not-be-logged-10"
    gw = gateway_factory(config(OPENAI_ROUTE))
    bad = config(OPENAI_ROUTE).replace('backendAuth: {key: "sk-test-secret"}', f'backendAuth: "{leaked}"')
    assert bad != config(OPENAI_ROUTE)
    rewrite(gw, bad)
    wait_until(lambda: "keeping the last good config" in gw.output(), 3, what="the rejected reload")
    out = gw.output()
    assert "backendAuth" in out, "the error should still name the field"
    assert leaked not in out
    assert requests.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, timeout=5).status_code == 200
    # --validate-only says the same (the file on disk is still the rejected one).
    run = subprocess.run([str(binary("gateway")), "-f", str(gw.config_path), "--validate-only"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode != 0
    assert "backendAuth" in run.stdout + run.stderr and leaked not in run.stdout + run.stderr


PLAIN_ROUTE = """
    - name: plain
      matches: [{path: {pathPrefix: /v1/chat}}]
      backends:
      - host: "{sim}"
"""


def test_stalled_plain_backend_body_ends_at_the_idle_timeout(sim, gateway_factory):
    """A plain `host` backend streams the body through untouched; one that stalls halfway is
    still cut at streamIdleTimeout (the client sees the body end with an error), logged once
    and blamed on the upstream."""
    gw = gateway_factory(config(PLAIN_ROUTE, extra=LIMITS))
    mark = gw.log_mark()
    start = time.monotonic()
    try:
        r = requests.post(f"{gw.url}/v1/chat/completions", json=CHAT, timeout=10,
                          headers={"x-sim-fault": "stall", "authorization": f"Bearer {CLIENT_KEY}"})
        outcome = f"complete {r.status_code}: {r.content[:80]!r}"
    except requests.RequestException as e:
        outcome = repr(e)
    took = time.monotonic() - start
    assert took < 4.0, f"a stalled plain body held the client for {took:.1f}s (streamIdleTimeout 1s)"
    assert outcome.startswith(("ChunkedEncodingError", "ConnectionError")), outcome
    [line] = gw.wait_for_access_log(since=mark)
    assert "idle" in line.get("error", ""), line
