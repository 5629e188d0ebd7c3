"""Request metrics pushed over OTLP when the standard environment says so
(`OTEL_METRICS_EXPORTER=otlp`, `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, `..._PROTOCOL`,
`OTEL_METRIC_EXPORT_INTERVAL`), to a real receiver (rotel printing what it gets): the
OpenTelemetry GenAI names with units and explicit buckets. Prometheus `/metrics` stays as it is.
"""

from __future__ import annotations

import pytest
import requests

from conftest import CLIENT_KEY, CONFIG_HEAD, SIM_OPENAI_ROUTE, wait_until
from opskit import metric

CONFIG = CONFIG_HEAD + SIM_OPENAI_ROUTE


def chat(gw) -> None:
    r = requests.post(f"{gw.url}/v1/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {CLIENT_KEY}"},
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_genai_metrics_reach_the_receiver(sim, gateway_factory, rotel_metrics, protocol):
    endpoint = rotel_metrics.grpc_endpoint if protocol == "grpc" else rotel_metrics.http_endpoint
    gw = gateway_factory(CONFIG, env_vars={
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": endpoint + ("" if protocol == "grpc" else "/v1/metrics"),
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": protocol,
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_SERVICE_NAME": "gw-metrics-test",
    })
    for _ in range(3):
        chat(gw)
    names = ["gen_ai.client.token.usage", "gen_ai.client.operation.duration",
             "gen_ai.server.time_per_output_token", "http.server.request.duration"]
    wait_until(lambda: all(n in rotel_metrics.output() for n in names), 20, interval=0.3,
               what="the GenAI metrics at rotel")
    out = rotel_metrics.output()
    assert "gw-metrics-test" in out, out[-3000:]
    # Units and attributes as the GenAI semantic conventions name them.
    usage = out[out.rindex("Name: gen_ai.client.token.usage"):]
    assert "Unit: {token}" in usage and "AGGREGATION_TEMPORALITY_CUMULATIVE" in usage
    assert "gen_ai.token.type: Str(input)" in out and "gen_ai.request.model: Str(gpt-4o-mini)" in out
    # Explicit buckets: the GenAI convention's token boundaries, all 14 of them.
    assert "ExplicitBounds #13: 67108864" in usage, usage[:3000]
    assert "Unit: s" in out
    # Prometheus keeps serving the same requests.
    assert metric(gw, "agentgateway_requests_total") >= 3


def test_bad_metrics_exporter_is_a_start_up_error(tmp_path):
    import subprocess
    from conftest import binary
    cfg = tmp_path / "c.yaml"
    cfg.write_text("binds: []\n")
    run = subprocess.run([str(binary("gateway")), "-f", str(cfg)], capture_output=True, text=True,
                         timeout=30, env={"OTEL_METRICS_EXPORTER": "zipkin", "PATH": "/usr/bin:/bin"})
    assert run.returncode != 0
    err = run.stderr + run.stdout
    assert "OTEL_METRICS_EXPORTER" in err and "zipkin" in err, err
    assert "panicked" not in err


def test_a_dead_metrics_collector_costs_no_request_and_no_hang(sim, gateway_factory):
    import socket
    import time
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    gw = gateway_factory(CONFIG, env_vars={
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{dead}",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
    })
    for _ in range(5):
        chat(gw)
    time.sleep(0.5)  # a few failed exports
    chat(gw)
    started = time.monotonic()
    assert gw.stop() == 0
    assert time.monotonic() - started < 15
