"""Config you can trust on reload: every CEL-driven setting (access-log fields and filter,
tracing fields and sampling, MCP authorization rules) applies to the next request; a bad
expression fails the whole reload, counted and named by YAML path, and the last good config
keeps serving; settings that need a restart are said to, never reported as plain success.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from conftest import wait_until
from opskit import OPENAI_ROUTE, config, metric, post_chat, rewrite

RELOADS = "agentgateway_config_reloads_total"
PENDING = "agentgateway_config_restart_pending"

# The fuzz-found CEL input that made cel-interpreter's parser grow to 4.9 GB (issue 13).
FUZZ_CEL = base64.b64decode(
    "bytbW1lbLS0oLS1bWywtLTs7OygtLVtbRy0tWy0tKC0tW1tHW1stLSgtLSpbbCwtLVtbcyx3b3JrLS0tWy0tKC0tW1tHLW8r"
    "W1tZWy0tKC0tW1ssLS07OzsoLS1bW0ctLVstLSgtLVtbR1tbLS0oLS0qW2wsLS1bW3Msd29yay0tLVstLSgtLVtbRy1vfHwg"
    "bGxtLmluW1tZW1tbc28tLS1bLS0oLS1bW2wsLS0oLS1bW0ctLVstLSgtLVtbR1tbLS0oLS0qW0dDRVQ/XA=="
).decode()


def logging_block(fields: dict[str, str]) -> str:
    items = ", ".join(f"{k}: {json.dumps(v)}" for k, v in fields.items())
    return f"  logging:\n    fields:\n      add: {{{items}}}\n"


def wait_reloads(gw, result: str, n: int = 1) -> None:
    wait_until(lambda: metric(gw, RELOADS, result=result) >= n, 5, interval=0.1,
               what=f"{n} reload(s) counted as {result}")


def last_line(gw, since: int) -> dict:
    return gw.wait_for_access_log(since=since, where=lambda l: l.get("route") == "openai")[-1]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def test_changed_access_log_fields_apply_to_the_next_request(sim, gateway_factory):
    gw = gateway_factory(config(OPENAI_ROUTE, extra=logging_block({"team": '"red"'})))
    mark = gw.log_mark()
    assert post_chat(gw).status_code == 200
    assert last_line(gw, mark).get("team") == "red"

    rewrite(gw, config(OPENAI_ROUTE, extra=logging_block({"team": '"blue"', "asked": "llm.request_model"})))
    wait_reloads(gw, "success")
    mark = gw.log_mark()
    assert post_chat(gw).status_code == 200
    line = last_line(gw, mark)
    assert line.get("team") == "blue" and line.get("asked") == "gpt-4o-mini", line
    assert metric(gw, PENDING) == 0


def test_frontend_access_log_filter_reloads(sim, gateway_factory):
    """``frontendPolicies.accessLog`` (agentgateway's name) merged over ``config.logging``."""
    base = config(OPENAI_ROUTE)
    gw = gateway_factory(base)
    rewrite(gw, base + "frontendPolicies:\n  accessLog:\n    filter: 'response.code == 599'\n")
    wait_reloads(gw, "success")
    mark = gw.log_mark()
    assert post_chat(gw).status_code == 200
    time.sleep(0.5)
    assert [l for l in gw.access_log(mark) if l.get("route") == "openai"] == [], "the filter drops it"
    rewrite(gw, base + "frontendPolicies:\n  accessLog:\n    add: {via: '\"reloaded\"'}\n")
    wait_reloads(gw, "success", 2)
    mark = gw.log_mark()
    assert post_chat(gw).status_code == 200
    assert last_line(gw, mark).get("via") == "reloaded"


def test_tracing_fields_reload_into_the_next_span(sim, gateway_factory, rotel):
    def tracing(value: str) -> str:
        return (f"  tracing:\n    otlpEndpoint: {rotel.grpc_endpoint}\n    randomSampling: true\n"
                f"    fields:\n      add:\n        deploy.color: '\"{value}\"'\n")
    gw = gateway_factory(config(OPENAI_ROUTE, extra=tracing("green")))
    assert post_chat(gw).status_code == 200
    rotel.wait_for_span(where=lambda s: s.attributes.get("deploy.color") == "green")
    rewrite(gw, config(OPENAI_ROUTE, extra=tracing("purple")))
    wait_reloads(gw, "success")
    assert post_chat(gw).status_code == 200
    rotel.wait_for_span(where=lambda s: s.attributes.get("deploy.color") == "purple")


@pytest.mark.parametrize("bad, path", [
    (logging_block({"team": "llm.(("}), 'config.logging.fields.add["team"]'),
    (logging_block({"team": FUZZ_CEL}), 'config.logging.fields.add["team"]'),
], ids=["syntax-error", "fuzz-found"])
def test_a_bad_expression_fails_the_whole_reload(sim, gateway_factory, bad, path):
    good = config(OPENAI_ROUTE, extra=logging_block({"team": '"red"'}))
    gw = gateway_factory(good)
    assert post_chat(gw).status_code == 200
    rss = rss_kib(gw.proc.pid)
    # The bad file also changes a route's name: nothing of it may apply.
    rewrite(gw, config(OPENAI_ROUTE.replace("name: openai", "name: renamed"), extra=bad))
    wait_reloads(gw, "failure")
    assert metric(gw, RELOADS, result="success") == 0
    assert path in gw.output()
    mark = gw.log_mark()
    assert post_chat(gw).status_code == 200
    line = last_line(gw, mark)
    assert line.get("team") == "red" and line.get("route") == "openai"
    assert gw.alive() and rss_kib(gw.proc.pid) - rss < 50_000, "memory stays flat"


def test_restart_only_changes_are_reported_as_such(sim, gateway_factory, tmp_path):
    gw = gateway_factory(config(OPENAI_ROUTE, extra="  logging: {format: text}\n"))
    admin = f"http://127.0.0.1:{gw.admin_port}"
    # The admin port moves and the log format changes (both start-up settings), and an access
    # log field is added (applied).
    moved = config(OPENAI_ROUTE, extra=logging_block({"team": '"red"'}).replace(
        "  logging:\n", "  logging:\n    format: json\n")).replace(
        "adminAddr: 127.0.0.1:{admin_port}", "adminAddr: 127.0.0.1:1")
    rewrite(gw, moved)
    wait_reloads(gw, "restart_required")
    assert metric(gw, RELOADS, result="success") == 0
    assert metric(gw, PENDING) == 2
    out = gw.output()
    assert "config.adminAddr (running 127.0.0.1:%d, configured 127.0.0.1:1)" % gw.admin_port in out
    assert "config.logging.format (running text, configured json)" in out
    dump = requests.get(f"{admin}/config_dump", timeout=5).json()  # still on the old port
    pending = {p["path"]: p for p in dump["restartRequired"]}
    assert pending["config.adminAddr"]["running"] == f"127.0.0.1:{gw.admin_port}"
    assert pending["config.logging.format"]["configured"] == "json"
    # What could apply did.
    mark = gw.log_mark()
    assert post_chat(gw).status_code == 200
    assert "team=red" in gw.stdout()[mark:] or last_line(gw, mark).get("team") == "red"
