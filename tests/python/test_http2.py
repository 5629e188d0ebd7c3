"""HTTP/2 downstream: cleartext prior-knowledge (h2c) requests through the gateway, plain and
streamed, get the same answers as HTTP/1.1 and are logged as HTTP/2."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from conftest import CLIENT_KEY


def _curl() -> str:
    path = shutil.which("curl")
    if path is None:
        pytest.skip("curl not installed")
    return path


def _h2(url: str, body: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_curl(), "-sS", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}", url,
         "-H", "content-type: application/json", "-H", f"authorization: Bearer {CLIENT_KEY}",
         "-d", json.dumps(body)],
        capture_output=True, text=True, timeout=20,
    )


def test_h2c_plain_and_stream(llm_gateway):
    mark = llm_gateway.log_mark()
    url = f"{llm_gateway.url}/openai/v1/chat/completions"
    out = _h2(url, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "over h2"}]})
    assert out.returncode == 0, out.stderr
    body, status = out.stdout.rsplit("\n", 1)
    assert status == "2 200", status
    assert "over h2" in json.loads(body)["choices"][0]["message"]["content"]

    out = _h2(url, {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "stream h2"}]})
    body, status = out.stdout.rsplit("\n", 1)
    assert status == "2 200", status
    events = [l[len("data: "):] for l in body.splitlines() if l.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1] if json.loads(e)["choices"])
    assert "stream h2" in text
    assert not any('"usage"' in e and '"choices":[]' in e for e in events), "usage chunk the client did not ask for"

    lines = llm_gateway.wait_for_access_log(count=2, since=mark)
    assert all(l["http.version"] == "HTTP/2" for l in lines), lines
    assert all(isinstance(l["llm.response.tokens"], int) for l in lines), lines
