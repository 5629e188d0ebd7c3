"""MCP target for the gateway's integration tests (Python SDK `MCPServer`).

Usage: target_server.py NAME stdio
       target_server.py NAME http PORT      (streamable HTTP at /mcp)
       target_server.py NAME sse PORT       (legacy SSE at /sse)
Tool results are prefixed with NAME so tests can tell which target answered.
"""

import asyncio
import json
import os
import sys

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
import mcp_types as types

NAME = sys.argv[1]
TRANSPORT = sys.argv[2]
app = MCPServer(NAME)


@app.tool()
def echo(message: str) -> str:
    return f"{NAME}:{message}"


@app.tool()
def add(a: int, b: int) -> int:
    return a + b


@app.tool()
def pid() -> int:
    return os.getpid()


@app.tool()
def crash() -> str:
    os._exit(3)


@app.tool()
def fail() -> str:
    raise ValueError("boom")


@app.tool()
async def progress(steps: int, ctx: Context) -> str:
    for i in range(steps):
        await ctx.report_progress(i + 1, steps)
        await asyncio.sleep(0.05)
    return f"{NAME}:done"


@app.tool()
async def sample(prompt: str, ctx: Context) -> str:
    msg = types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))
    r = await ctx.session.create_message([msg], max_tokens=10)
    return f"{NAME}:sampled:{r.content.text}"


@app.tool()
async def hang(marker: str) -> str:
    """Sleeps; if the call is cancelled (notifications/cancelled), writes "cancelled" to marker."""
    done = False
    try:
        await asyncio.sleep(30)
        done = True
        return "finished"
    finally:
        if not done:
            with open(marker, "w") as f:
                f.write("cancelled")


@app.tool()
def meta(ctx: Context) -> str:
    m = ctx.request_context.meta or {}
    return json.dumps({"meta": dict(m), "headers": dict(ctx.headers or {})})


@app.prompt()
def greet(who: str) -> str:
    return f"hello {who} from {NAME}"


@app.resource("memo://note")
def note() -> str:
    return f"note from {NAME}"


if __name__ == "__main__":
    if TRANSPORT == "stdio":
        app.run(transport="stdio")
    elif TRANSPORT == "http":
        app.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[3]))
    else:
        app.run(transport="sse", host="127.0.0.1", port=int(sys.argv[3]))
