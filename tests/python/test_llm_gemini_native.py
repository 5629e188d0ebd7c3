"""Gemini-native clients (`models/{model}:generateContent`, `:streamGenerateContent?alt=sse`)
through a Gemini route: the path is kept, re-rooted under the provider's base path, the key is
injected as `x-goog-api-key`, the stream is forwarded event by event and its usage counted."""

from __future__ import annotations

import json

import requests

from conftest import CLIENT_KEY, GEMINI_SECRET, assert_no_leaks

BODY = {"contents": [{"role": "user", "parts": [{"text": "hello native gemini"}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]}}


def test_generate_content(llm_gateway, sim):
    sim.reset()
    mark = llm_gateway.log_mark()
    r = requests.post(f"{llm_gateway.url}/gemini/v1beta/models/gemini-2.0-flash:generateContent",
                      json=BODY, headers={"x-goog-api-key": CLIENT_KEY}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "hello native gemini" in body["candidates"][0]["content"]["parts"][0]["text"]
    rec = sim.requests()
    assert len(rec) == 1
    assert rec[0]["path"] == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert rec[0]["headers"].get("x-goog-api-key") == GEMINI_SECRET
    assert_no_leaks(rec)
    line = llm_gateway.wait_for_access_log(since=mark)[0]
    assert line["llm.provider"] == "gemini"
    assert line["llm.request.model"] == "gemini-2.0-flash"
    assert line["llm.request.tokens"] == body["usageMetadata"]["promptTokenCount"]
    assert line["llm.response.tokens"] == body["usageMetadata"]["candidatesTokenCount"]


def test_stream_generate_content(llm_gateway, sim):
    sim.reset()
    mark = llm_gateway.log_mark()
    with requests.post(f"{llm_gateway.url}/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                       json=BODY, stream=True, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(l[len("data: "):]) for l in r.iter_lines(decode_unicode=True) if l.startswith("data: ")]
    assert len(events) > 1
    text = "".join(p["text"] for e in events for c in e.get("candidates", []) for p in c["content"]["parts"])
    assert "hello native gemini" in text
    assert sim.requests()[0]["query"] == "alt=sse"
    last_usage = events[-1]["usageMetadata"]
    line = llm_gateway.wait_for_access_log(since=mark)[0]
    assert line["llm.response.tokens"] == last_usage["candidatesTokenCount"]
    assert line["llm.request.tokens"] == last_usage["promptTokenCount"]
    assert "error" not in line
