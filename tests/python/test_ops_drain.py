"""SIGTERM drain: readiness turns 503 at once, the listener stops accepting, in-flight streams
finish, idle keep-alive connections do not hold the process, and whatever is still open at
``config.connectionTerminationDeadline`` is cut so the process exits 0 on time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import httpx2
import openai
import pytest
import requests

from conftest import CLIENT_KEY, wait_until
from opskit import CHAT, OPENAI_ROUTE, config, ready_status, words

REPLY_PREFIX = "Hello from the simulator."


def drain_config(deadline: str) -> str:
    return config(OPENAI_ROUTE, extra=f"  connectionTerminationDeadline: {deadline}\n")


def refuses_connections(gw) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def slow_stream(gw, n_words: int, delay_ms: int):
    oa = openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)
    return oa.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": words(n_words)}], stream=True,
        extra_headers={"x-sim-chunk-delay-ms": str(delay_ms)})


def test_sigterm_drains_an_open_stream_then_exits_zero(sim, gateway_factory):
    gw = gateway_factory(drain_config("10s"))
    mark = gw.log_mark()
    # 10 words → 16 reply pieces, 250 ms apart: about 4.5 s of stream.
    stream = slow_stream(gw, 10, 250)
    chunks = iter(stream)
    first = next(chunks)
    assert first.choices[0].delta.role == "assistant"
    os.kill(gw.proc.pid, signal.SIGTERM)
    sigterm = time.monotonic()

    # Readiness says 503 (the server still answers), and quickly.
    wait_until(lambda: ready_status(gw) == 503, 1.0, interval=0.02, what="readiness 503")
    # New connections are refused soon after (connectionMinTerminationDeadline defaults to 0).
    wait_until(lambda: refuses_connections(gw), 2.0, interval=0.05, what="connections refused")
    assert gw.alive(), "the gateway must wait for the open stream"

    text, finish = "", None
    for chunk in chunks:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert text == f"{REPLY_PREFIX} You said: {words(10)}"
    assert finish == "stop"

    rc = gw.proc.wait(timeout=10)
    took = time.monotonic() - sigterm
    assert rc == 0, f"exit code {rc}; stderr:\n{gw.stderr()[-2000:]}"
    assert took < 10, f"exited {took:.1f}s after SIGTERM, the deadline is 10s"
    [line] = gw.wait_for_access_log(since=mark)
    assert line.get("http.status") == 200
    assert not line.get("error"), line


def test_idle_keepalive_connections_do_not_delay_exit(sim, gateway_factory):
    gw = gateway_factory(drain_config("10s"))
    sessions = [requests.Session() for _ in range(3)]
    try:
        for s in sessions:
            assert s.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, timeout=5).status_code == 200
        # Three idle keep-alive connections stay open while the gateway drains.
        start = time.monotonic()
        os.kill(gw.proc.pid, signal.SIGTERM)
        rc = gw.proc.wait(timeout=10)
        took = time.monotonic() - start
    finally:
        for s in sessions:
            s.close()
    assert rc == 0
    assert took < 2.0, f"idle connections held the drain for {took:.1f}s"


def test_stream_longer_than_the_deadline_is_cut_at_the_deadline(sim, gateway_factory):
    gw = gateway_factory(drain_config("2s"))
    # 30 words → 36 pieces, 250 ms apart: about 9 s, far beyond the 2 s deadline.
    stream = slow_stream(gw, 30, 250)
    chunks = iter(stream)
    next(chunks)
    os.kill(gw.proc.pid, signal.SIGTERM)
    sigterm = time.monotonic()
    text, finish, error = "", None, None
    try:
        for chunk in chunks:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
    except (openai.APIError, httpx2.HTTPError) as e:
        error = e
    cut_after = time.monotonic() - sigterm
    assert finish is None, "the stream cannot have completed"
    assert len(text.split()) < 30, text
    assert 1.5 <= cut_after < 4.0, f"stream ended {cut_after:.1f}s after SIGTERM (deadline 2s), error={error!r}"
    rc = gw.proc.wait(timeout=5)
    took = time.monotonic() - sigterm
    assert rc == 0, f"exit code {rc}; stderr:\n{gw.stderr()[-2000:]}"
    assert took < 4.0, f"exited {took:.1f}s after SIGTERM (deadline 2s)"
    assert "drain deadline reached" in gw.output()


def test_sigterm_lets_a_slow_buffered_request_finish(sim, gateway_factory):
    """A non-streamed request whose upstream answers 1.5 s later is in flight at SIGTERM: it
    gets its full response, then the process exits 0."""
    gw = gateway_factory(drain_config("10s"))
    result: dict = {}

    def call():
        try:
            r = requests.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, timeout=10,
                              headers={"x-sim-fault": "slow", "x-sim-delay-ms": "1500"})
            result["status"], result["body"] = r.status_code, r.json()
        except Exception as e:  # noqa: BLE001
            result["error"] = repr(e)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.5)
    assert not result, "the request must still be in flight at SIGTERM"
    os.kill(gw.proc.pid, signal.SIGTERM)
    t.join(timeout=10)
    assert result.get("status") == 200, result
    assert result["body"]["choices"][0]["message"]["content"].startswith(REPLY_PREFIX)
    assert gw.proc.wait(timeout=10) == 0


def test_sigterm_drains_an_http2_stream(sim, gateway_factory):
    """Same over HTTP/2 (h2c, curl): GOAWAY for new streams, the open one completes."""
    curl = shutil.which("curl")
    if curl is None:
        assert os.environ.get("CI") != "true", "curl missing under CI=true (tests/scripts/install-deps.sh)"
        pytest.skip("curl not installed")
    gw = gateway_factory(drain_config("10s"))
    body = json.dumps({"model": "gpt-4o-mini", "stream": True,
                       "messages": [{"role": "user", "content": words(6)}]})
    proc = subprocess.Popen(
        [curl, "-sS", "-N", "--http2-prior-knowledge", "-o", "-", "-w", "\\n%{http_version} %{http_code}\\n",
         "-H", "content-type: application/json", "-H", "x-sim-chunk-delay-ms: 200", "--data", body,
         f"{gw.url}/openai/v1/chat/completions"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("data: "), first
        os.kill(gw.proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "data: [DONE]" in out
    assert out.rstrip().endswith("2 200"), out[-200:]
    assert gw.proc.wait(timeout=10) == 0
