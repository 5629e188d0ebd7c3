"""MCP through the real ``gateway`` binary, configured in agentgateway's format, driven by the
official MCP Python SDK client and the MCP Inspector CLI.

Targets: the Python SDK test server (``gateway-user/tests/mcp/target_server.py``) over stdio and
streamable HTTP, and ``@modelcontextprotocol/server-everything`` (npm, ``target/npm``) over stdio.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mcp
import pytest
import requests
from mcp.client.sse import sse_client

from conftest import ROOT, free_port, stop_process, wait_until

TARGET_SERVER = ROOT / "gateway-user" / "tests" / "mcp" / "target_server.py"
NPM = Path(os.environ.get("GATEWAY_TEST_NPM", ROOT / "target" / "npm"))
EVERYTHING = NPM / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
INSPECTOR = NPM / "node_modules" / ".bin" / "mcp-inspector"

ADDRS = """
config:
  readinessAddr: 127.0.0.1:{ready_port}
  statsAddr: 127.0.0.1:{stats_port}
  adminAddr: 127.0.0.1:{admin_port}
"""


def mcp_route(*targets: str, config: str = "") -> str:
    """A gateway config with one route to an MCP backend over ``targets`` (YAML flow maps);
    ``config`` adds lines to the ``config:`` block."""
    items = "".join(f"          - {t}\n" for t in targets)
    return ADDRS + config + f"""
binds:
- port: {{port}}
  listeners:
  - routes:
    - backends:
      - mcp:
          targets:
{items}"""


def stdio_target(name: str) -> str:
    return f"{{name: {name}, stdio: {{cmd: '{sys.executable}', args: ['{TARGET_SERVER}', '{name}', stdio]}}}}"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_http_target(port: int) -> subprocess.Popen:
    """The Python SDK test server as target ``b`` over streamable HTTP on ``port``, once it
    answers."""
    proc = subprocess.Popen(
        [sys.executable, str(TARGET_SERVER), "b", "http", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )

    def up():
        try:
            requests.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
            return True
        except requests.RequestException:
            return False

    try:
        wait_until(up, 20, interval=0.1, what="python MCP target")
    except BaseException:
        stop_process(proc)
        raise
    return proc


@pytest.fixture
def http_target():
    """The Python SDK test server as target ``b`` over streamable HTTP."""
    port = free_port()
    proc = start_http_target(port)
    try:
        yield port
    finally:
        stop_process(proc)


def test_simple_mcp_shorthand_with_stdio_target(gateway_factory):
    """agentgateway's ``mcp:`` shorthand (examples/mcp-basic) with CORS policies, served at /mcp."""
    gw = gateway_factory(ADDRS + f"""
mcp:
  port: {{port}}
  policies:
    cors:
      allowOrigins: ["*"]
      allowHeaders: [mcp-protocol-version, content-type, cache-control, mcp-session-id]
      exposeHeaders: ["Mcp-Session-Id"]
  targets:
  - {stdio_target("solo")}
""")

    async def scenario():
        async with mcp.Client(f"{gw.url}/mcp") as c:
            tools = sorted(t.name for t in (await c.list_tools()).tools)
            echo = await c.call_tool("echo", {"message": "hi"})
            return tools, echo.content[0].text

    tools, echo = run(scenario())
    assert "echo" in tools and "add" in tools, tools  # one target: no prefix
    assert echo == "solo:hi"


def test_multiplexed_route_with_authorization(gateway_factory, http_target):
    mark = 0
    gw = gateway_factory(ADDRS + f"""
binds:
- port: {{port}}
  listeners:
  - routes:
    - policies:
        mcpAuthorization:
          rules:
          - 'mcp.tool.name == "echo"'
          - 'mcp.tool.target == "b" && mcp.tool.name == "add"'
      backends:
      - mcp:
          targets:
          - {stdio_target("a")}
          - name: b
            mcp:
              host: http://127.0.0.1:{http_target}/mcp
""")
    mark = gw.log_mark()

    async def scenario():
        async with mcp.Client(f"{gw.url}/mcp") as c:
            tools = sorted(t.name for t in (await c.list_tools()).tools)
            a = (await c.call_tool("a_echo", {"message": "x"})).content[0].text
            b = (await c.call_tool("b_add", {"a": 2, "b": 2})).content[0].text
            try:
                await c.call_tool("a_add", {"a": 1, "b": 1})
                denied = "allowed"
            except Exception as e:  # the SDK raises MCPError for JSON-RPC errors
                denied = str(e)
            return tools, a, b, denied

    tools, a, b, denied = run(scenario())
    assert tools == ["a_echo", "b_add", "b_echo"]
    assert a == "a:x"
    assert b == "4"
    assert "Unauthorized" in denied and "a_add" in denied, denied

    lines = gw.wait_for_access_log(
        since=mark, where=lambda l: l.get("mcp.method.name") == "tools/call" and l.get("mcp.target") == "b"
    )
    line = lines[0]
    assert line.get("gen_ai.tool.name") == "add", line
    assert line.get("mcp.session.id"), line


def test_legacy_sse_client_through_gateway(gateway_factory):
    gw = gateway_factory(mcp_route(stdio_target("a"), stdio_target("b")))

    async def scenario():
        async with mcp.Client(sse_client(f"{gw.url}/sse")) as c:
            tools = [t.name for t in (await c.list_tools()).tools]
            r = await c.call_tool("b_echo", {"message": "legacy"})
            return tools, r.content[0].text

    tools, text = run(scenario())
    assert "a_echo" in tools and "b_echo" in tools
    assert text == "b:legacy"


def test_session_delete_stops_stdio_children(gateway_factory):
    gw = gateway_factory(mcp_route(stdio_target("a")))

    async def scenario():
        async with mcp.Client(f"{gw.url}/mcp") as c:
            return int((await c.call_tool("pid", {})).content[0].text)

    pid = run(scenario())
    # The client sent DELETE on exit; the child must be gone soon after.
    wait_until(lambda: not pid_alive(pid), 10, what=f"stdio target {pid} to exit")


def test_restarted_http_target_gets_a_new_session(gateway_factory):
    """A target that restarts forgets its sessions and answers 404 (MCP spec): the gateway starts
    a new session with it and the client's session carries on, without an error."""
    port = free_port()
    procs = [start_http_target(port)]
    try:
        gw = gateway_factory(mcp_route(f"{{name: b, mcp: {{host: 'http://127.0.0.1:{port}/mcp'}}}}"))

        async def scenario():
            async with mcp.Client(f"{gw.url}/mcp") as c:
                before = int((await c.call_tool("pid", {})).content[0].text)
                await asyncio.to_thread(stop_process, procs[0])
                procs.append(await asyncio.to_thread(start_http_target, port))
                after = int((await c.call_tool("pid", {})).content[0].text)
                echo = (await c.call_tool("echo", {"message": "again"})).content[0].text
                return before, after, echo

        before, after, echo = run(scenario())
        assert before == procs[0].pid and after == procs[1].pid, (before, after)
        assert echo == "b:again"
        assert gw.output().count("no longer knows the session") == 1, gw.output()[-2000:]
    finally:
        for p in procs:
            stop_process(p)


def test_bad_json_gets_parse_error(gateway_factory):
    gw = gateway_factory(mcp_route(stdio_target("a")))
    r = requests.post(f"{gw.url}/mcp", data="{oops", headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == -32700


def test_inspector_cli_against_server_everything(gateway_factory):
    if not EVERYTHING.exists() or not INSPECTOR.exists():
        pytest.fail(f"npm packages missing under {NPM}: run tests/scripts/install-deps.sh", pytrace=False)
    gw = gateway_factory(mcp_route(
        f"{{name: everything, stdio: {{cmd: node, args: ['{EVERYTHING}', stdio]}}}}", stdio_target("py")
    ))
    base = [str(INSPECTOR), "--cli", f"{gw.url}/mcp", "--transport", "http"]
    listed = subprocess.run(base + ["--method", "tools/list"], capture_output=True, text=True, timeout=90)
    assert listed.returncode == 0, listed.stderr
    names = {t["name"] for t in json.loads(listed.stdout)["tools"]}
    assert {"everything_echo", "everything_get-sum", "py_echo"} <= names, names
    called = subprocess.run(
        base + ["--method", "tools/call", "--tool-name", "everything_get-sum", "--tool-arg", "a=40", "--tool-arg", "b=2"],
        capture_output=True, text=True, timeout=90,
    )
    assert called.returncode == 0, called.stderr
    assert "42" in called.stdout, called.stdout


def test_target_calls_are_traced_under_the_request(gateway_factory, http_target, rotel):
    """Seed 001's tracing block with an MCP route: every upstream call becomes a CLIENT span whose
    id is the one the target received in ``traceparent`` (HTTP header and ``_meta``; stdio gets
    only ``_meta``), under the request's trace."""
    gw = gateway_factory(mcp_route(
        stdio_target("a"),
        f"{{name: b, mcp: {{host: 'http://127.0.0.1:{http_target}/mcp'}}}}",
        config=f"""  tracing:
    otlpEndpoint: {rotel.grpc_endpoint}
    otlpProtocol: grpc
    randomSampling: true
""",
    ))

    async def scenario():
        async with mcp.Client(f"{gw.url}/mcp") as c:
            b = json.loads((await c.call_tool("b_meta", {})).content[0].text)
            a = json.loads((await c.call_tool("a_meta", {})).content[0].text)
            return a, b

    a, b = run(scenario())
    b_tp = b["meta"]["traceparent"]
    assert b["headers"].get("traceparent") == b_tp
    a_tp = a["meta"]["traceparent"]
    for tp, target in [(b_tp, "b"), (a_tp, "a")]:
        _, trace_id, span_id, flags = tp.split("-")
        assert flags == "01"
        [span] = rotel.wait_for_span(where=lambda s, sid=span_id: s.span_id == sid)
        assert span.trace_id == trace_id, (span, tp)
        assert span.name == f"tools/call {target}", span
        assert span.kind.lower().endswith("client"), span
        assert span.attributes.get("mcp.target") == target, span.attributes
        assert span.attributes.get("gen_ai.tool.name") == "meta", span.attributes
        [parent] = rotel.wait_for_span(where=lambda s, p=span.parent_id: s.span_id == p)
        assert parent.trace_id == trace_id
