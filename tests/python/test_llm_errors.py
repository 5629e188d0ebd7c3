"""Error handling through the gateway: bad client input gets a provider-shaped 400 without
reaching upstream, unknown routes 404, upstream errors pass through with their bodies, an
unreachable upstream is a 502, a slow one a 504 at the route's timeout, and broken upstream
streams neither crash the gateway nor go unlogged.

Routes come from ``conftest.LLM_CONFIG``.
"""

from __future__ import annotations

import time

import anthropic
import httpx2
import openai
import pytest
import requests

from conftest import CLIENT_KEY

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}


def post_raw(gw, path, data, headers=None):
    h = {"content-type": "application/json", "authorization": f"Bearer {CLIENT_KEY}"}
    h.update(headers or {})
    return requests.post(f"{gw.url}{path}", data=data, headers=h, timeout=10)


def assert_openai_error(resp, status):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert isinstance(body.get("error"), dict), body
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"], body
    assert "type" in body["error"], body
    return body


def assert_anthropic_error(resp, status):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body.get("type") == "error", body
    assert isinstance(body.get("error"), dict) and body["error"].get("type") and body["error"].get("message"), body
    return body


def test_malformed_json_openai_shape(sim, llm_gateway):
    r = post_raw(llm_gateway, "/openai/v1/chat/completions", b'{"model": "gpt-4o-mini", "messages": [')
    body = assert_openai_error(r, 400)
    assert body["error"]["type"] == "invalid_request_error"
    assert sim.requests() == [], "a request the gateway cannot parse must not go upstream"


def test_malformed_json_anthropic_shape(sim, llm_gateway):
    r = post_raw(llm_gateway, "/anthropic/v1/messages", b"{not json", {"anthropic-version": "2023-06-01"})
    body = assert_anthropic_error(r, 400)
    assert body["error"]["type"] == "invalid_request_error"
    assert sim.requests() == []


def test_unknown_route_is_404(sim, llm_gateway):
    mark = llm_gateway.log_mark()
    r = post_raw(llm_gateway, "/no-such-route/v1/chat/completions", b"{}")
    assert r.status_code == 404
    assert sim.requests() == []
    [line] = llm_gateway.wait_for_access_log(since=mark)
    assert line.get("http.status") == 404


@pytest.mark.parametrize("status,exc", [(500, openai.InternalServerError), (429, openai.RateLimitError),
                                        (503, openai.InternalServerError)])
def test_upstream_error_passes_through_openai(sim, llm_gateway, status, exc):
    mark = llm_gateway.log_mark()
    oa = openai.OpenAI(base_url=f"{llm_gateway.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(exc) as e:
        oa.chat.completions.create(**CHAT, extra_headers={"x-sim-fault": str(status), "x-sim-retry-after": "3"})
    assert e.value.status_code == status
    # The SDK exposes the provider's `error` object: the simulator's own message must survive.
    assert isinstance(e.value.body, dict) and "(simulated)" in e.value.body.get("message", ""), e.value.body
    if status == 429:
        assert e.value.response.headers.get("retry-after") == "3"
    recorded = sim.requests()
    assert len(recorded) == 1, "the gateway must not retry by default"
    [line] = llm_gateway.wait_for_access_log(since=mark)
    assert line.get("http.status") == status


def test_upstream_error_passes_through_anthropic(sim, llm_gateway):
    an = anthropic.Anthropic(base_url=f"{llm_gateway.url}/anthropic", api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as e:
        an.messages.create(**MESSAGES, extra_headers={"x-sim-fault": "429"})
    assert e.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.APIStatusError) as e:
        an.messages.create(**MESSAGES, extra_headers={"x-sim-fault": "529"})
    assert e.value.status_code == 529
    assert e.value.body["error"]["type"] == "overloaded_error"


def test_upstream_unreachable_is_502(sim, llm_gateway):
    mark = llm_gateway.log_mark()
    r = post_raw(llm_gateway, "/dead/v1/chat/completions", b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}')
    assert r.status_code == 502, r.text
    [line] = llm_gateway.wait_for_access_log(since=mark)
    assert line.get("http.status") == 502
    assert line.get("error"), "a failed request should say why in the access log"


def test_upstream_slower_than_route_timeout_is_504(sim, llm_gateway):
    mark = llm_gateway.log_mark()
    start = time.monotonic()
    r = post_raw(llm_gateway, "/slow/v1/chat/completions",
                 b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}',
                 {"x-sim-fault": "slow", "x-sim-delay-ms": "4000"})
    elapsed = time.monotonic() - start
    assert r.status_code == 504, r.text
    assert 0.9 <= elapsed < 3.0, f"timeout fired after {elapsed:.2f}s, route says 1s"
    [line] = llm_gateway.wait_for_access_log(since=mark)
    assert line.get("http.status") == 504
    # Same route, fast upstream: fine.
    r = post_raw(llm_gateway, "/slow/v1/chat/completions",
                 b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}')
    assert r.status_code == 200


STREAM_ROUTES = [("openai", "gpt-4o-mini"), ("oa2an", "claude-sonnet-4-5"), ("gemini", "gemini-2.0-flash")]


def stream_through(gw, prefix, model, fault):
    """Streams a chat completion with an upstream fault; returns (chunks, exception)."""
    oa = openai.OpenAI(base_url=f"{gw.url}/{prefix}/v1", api_key=CLIENT_KEY, max_retries=0)
    chunks, error = [], None
    try:
        for chunk in oa.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "one two three four five six"}], stream=True,
                extra_headers={"x-sim-fault": fault}):
            chunks.append(chunk)
    except (openai.APIError, httpx2.HTTPError, ValueError) as e:
        error = e
    return chunks, error


def finish_reasons(chunks):
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


@pytest.mark.parametrize("prefix,model", STREAM_ROUTES)
@pytest.mark.parametrize("fault", ["reset", "truncate", "midstream-error"])
def test_broken_upstream_stream(sim, llm_gateway, prefix, model, fault):
    """The client learns the stream broke (error, or at least no finish), the access log says
    so, and the gateway keeps serving."""
    mark = llm_gateway.log_mark()
    chunks, error = stream_through(llm_gateway, prefix, model, fault)
    assert finish_reasons(chunks) == [], "a broken stream must not look finished"
    if fault == "midstream-error":
        assert isinstance(error, openai.APIError) and "(simulated)" in str(error), repr(error)
    if fault == "reset":
        assert error is not None, "an aborted upstream must abort the client's stream"
    [line] = llm_gateway.wait_for_access_log(since=mark)
    assert line.get("error"), f"the access log must record the broken stream: {line}"
    assert llm_gateway.alive()
    oa = openai.OpenAI(base_url=f"{llm_gateway.url}/{prefix}/v1", api_key=CLIENT_KEY, max_retries=0)
    r = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content.startswith("Hello from the simulator.")


@pytest.mark.parametrize("prefix,model", STREAM_ROUTES)
def test_malformed_upstream_event_is_not_swallowed(sim, llm_gateway, prefix, model):
    """An upstream event that is not JSON loses part of the answer. Forwarding it lets the
    client fail; a translating route must not drop it and report a clean finish instead."""
    mark = llm_gateway.log_mark()
    chunks, error = stream_through(llm_gateway, prefix, model, "malformed")
    assert error is not None or finish_reasons(chunks) != ["stop"], (
        "the client received a truncated answer marked as complete")
    [line] = llm_gateway.wait_for_access_log(since=mark)
    if prefix != "openai":  # passthrough forwards the bytes and the client fails on its own
        assert line.get("error"), f"the access log must record the malformed upstream event: {line}"


def test_client_disconnect_mid_stream(sim, llm_gateway):
    mark = llm_gateway.log_mark()
    oa = openai.OpenAI(base_url=f"{llm_gateway.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0)
    stream = oa.chat.completions.create(**CHAT, stream=True, extra_headers={"x-sim-chunk-delay-ms": "200"})
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    stream.close()
    # The gateway still writes the request's log line, and keeps serving.
    lines = llm_gateway.wait_for_access_log(since=mark, timeout=10)
    assert len(lines) == 1
    assert llm_gateway.alive()
    assert oa.chat.completions.create(**CHAT).choices[0].finish_reason == "stop"


def test_upstream_errors_are_reshaped_for_the_client(sim, llm_gateway):
    """A translated route answers errors in the client's format, keeping status and message."""
    chat = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    for prefix, fault in [("/oa2an", "429"), ("/gemini", "429"), ("/oa2an", "529")]:
        r = post_raw(llm_gateway, f"{prefix}/v1/chat/completions", chat, {"x-sim-fault": fault})
        body = assert_openai_error(r, int(fault))
        assert "type" not in body or body.get("type") != "error", f"{prefix}: Anthropic-shaped error leaked: {body}"
        assert "(simulated)" in body["error"]["message"], body
    r = post_raw(llm_gateway, "/an2oa/v1/messages",
                 b'{"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}',
                 {"x-sim-fault": "500", "anthropic-version": "2023-06-01"})
    body = assert_anthropic_error(r, 500)
    assert body["error"]["type"] == "api_error"
    assert "(simulated)" in body["error"]["message"], body


def test_malformed_upstream_event_is_not_swallowed_for_anthropic_clients(sim, llm_gateway):
    """Same as above for an Anthropic client in front of an OpenAI backend: without the broken
    chunk the reply silently loses a word and still ends with ``end_turn``."""
    mark = llm_gateway.log_mark()
    an = anthropic.Anthropic(base_url=f"{llm_gateway.url}/an2oa", api_key=CLIENT_KEY, max_retries=0)
    final, error = None, None
    try:
        with an.messages.stream(model="gpt-4o-mini", max_tokens=64,
                                messages=[{"role": "user", "content": "one two three four five six"}],
                                extra_headers={"x-sim-fault": "malformed"}) as s:
            final = s.get_final_message()
    except (anthropic.APIError, httpx2.HTTPError, ValueError) as e:
        error = e
    assert error is not None or final.stop_reason != "end_turn", (
        f"truncated answer marked complete: {final.content[0].text!r}")
    [line] = llm_gateway.wait_for_access_log(since=mark)
    assert line.get("error"), f"the access log must record the malformed upstream event: {line}"



def test_empty_post_body_is_answered_not_forwarded(sim, llm_gateway):
    """An empty POST to an LLM route gets the gateway's own 400 in the caller's shape."""
    r = post_raw(llm_gateway, "/openai/v1/chat/completions", b"")
    body = assert_openai_error(r, 400)
    assert "body is empty" in body["error"]["message"], body
    r = post_raw(llm_gateway, "/anthropic/v1/messages", b"", {"anthropic-version": "2023-06-01"})
    body = assert_anthropic_error(r, 400)
    assert "body is empty" in body["error"]["message"], body
    assert sim.requests() == [], "an empty request must not go upstream"
