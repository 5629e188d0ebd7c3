"""Access logs over OTLP: agentgateway's ``frontendPolicies.accessLog.otlp`` sends one log
record per request to a real OTLP receiver (rotel), over gRPC and over HTTP, with the trace
and span ids of the request's span and the access-log fields as attributes; its own
``filter`` and ``fields`` apply; a dead receiver never slows a request.
"""

from __future__ import annotations

import re
import time

import openai
import pytest

from conftest import CLIENT_KEY, CONFIG_HEAD, SIM_OPENAI_ROUTE, free_port, load_error, wait_until

CONFIG = CONFIG_HEAD + """  tracing:
    otlpEndpoint: {otlp}
    otlpProtocol: grpc
    randomSampling: true
frontendPolicies:
  accessLog:
    add:
      team: '"platform"'
    otlp:
      host: {logs_host}
      protocol: {protocol}
      {extra}
""" + SIM_OPENAI_ROUTE

MSG = [{"role": "user", "content": "log me over otlp"}]


def records(rotel) -> list[dict]:
    """Log records in rotel's detailed debug output: attributes, body, trace and span ids."""
    out, cur = [], None
    for line in rotel.output().splitlines():
        s = line.strip()
        if s.startswith("LogRecord #"):
            cur = {"attributes": {}}
            out.append(cur)
            continue
        if s.startswith(("ResourceSpans #", "ResourceLogs #", "Resource attributes", "ScopeSpans #",
                         "ScopeLogs #", "Span #")):
            cur = None
            continue
        if cur is None:
            continue
        m = re.match(r"^-> (?P<k>[^:]+): (?P<t>\w+)\((?P<v>.*)\)$", s)
        if m:
            v = m.group("v")
            cur["attributes"][m.group("k").strip()] = int(v) if m.group("t") == "Int" else v
            continue
        f = re.match(r"^(Trace ID|Span ID|Body|SeverityText)\s*:\s*(.*)$", s)
        if f:
            cur[f.group(1)] = f.group(2).strip()
    return out


def ask(gw):
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=CLIENT_KEY, max_retries=0) \
        .chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_one_record_per_request_with_trace_ids(sim, gateway_factory, rotel_logs, protocol):
    port = rotel_logs.grpc_port if protocol == "grpc" else rotel_logs.http_port
    gw = gateway_factory(CONFIG, otlp=rotel_logs.grpc_endpoint, logs_host=f"127.0.0.1:{port}",
                         protocol=protocol, extra="")
    mark = gw.log_mark()
    ask(gw)
    [line] = gw.wait_for_access_log(since=mark)
    [rec] = wait_until(lambda: records(rotel_logs) or None, 15, what="an OTLP log record")
    a = rec["attributes"]
    assert a["team"] == "platform" and a["http.status"] == 200
    assert a["trace.id"] == line["trace.id"] and a["span.id"] == line["span.id"]
    assert rec["Trace ID"] == line["trace.id"] and rec["Span ID"] == line["span.id"]
    assert "http.status=200" in rec["Body"]
    [span] = rotel_logs.wait_for_span(where=lambda s: s.kind == "SPAN_KIND_SERVER")
    assert span.trace_id == line["trace.id"]
    assert CLIENT_KEY not in rotel_logs.output() and "sk-test-secret" not in rotel_logs.output()


def test_own_filter_and_fields(sim, gateway_factory, rotel_logs):
    extra = "filter: 'response.code >= 400'\n      fields: {add: {only: '\"this\"'}, remove: [http.path]}"
    gw = gateway_factory(CONFIG, otlp=rotel_logs.grpc_endpoint, logs_host=f"127.0.0.1:{rotel_logs.grpc_port}",
                         protocol="grpc", extra=extra)
    ask(gw)
    with pytest.raises(openai.InternalServerError):
        openai.OpenAI(base_url=f"{gw.url}/v1", api_key=CLIENT_KEY, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=MSG, extra_headers={"x-sim-fault": "500"})
    [rec] = wait_until(lambda: records(rotel_logs) or None, 15, what="the 500's record")
    time.sleep(1.5)
    assert len(records(rotel_logs)) == 1, "the 200 is filtered out"
    a = rec["attributes"]
    assert a["only"] == "this" and "http.path" not in a and "team" not in a
    assert a["http.status"] == 500


def test_dead_receiver_costs_nothing_but_dropped_records(sim, gateway_factory, rotel):
    gw = gateway_factory(CONFIG, otlp=rotel.grpc_endpoint, logs_host=f"127.0.0.1:{free_port()}",
                         protocol="grpc", extra="")
    t = time.monotonic()
    for _ in range(5):
        assert ask(gw).status_code == 200
    assert time.monotonic() - t < 5


@pytest.mark.parametrize("block,path", [
    ("{protocol: grpc}", "frontendPolicies.accessLog.otlp.host"),
    ("{service: {name: otel/collector, port: 4317}}", "frontendPolicies.accessLog.otlp.service"),
    ("{host: 'c:4318', protocol: http, path: v1/logs}", "frontendPolicies.accessLog.otlp.path"),
    ("{host: 'c:4317', filter: '1 +'}", "frontendPolicies.accessLog.otlp.filter"),
])
def test_bad_block_is_a_load_error(tmp_path, block, path):
    err = load_error(tmp_path, f"frontendPolicies:\n  accessLog:\n    otlp: {block}\nbinds: []\n")
    assert path in err, err
