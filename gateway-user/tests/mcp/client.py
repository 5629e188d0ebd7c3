"""Drives the gateway with the official MCP Python SDK client for the Rust integration tests.

Usage: client.py URL [http|sse] < scenario.py
The scenario is the body of an async function with `c` (a connected `mcp.Client`), `types`,
and `out(value)` in scope; everything passed to `out` is printed as one JSON list at the end.
The client answers sampling requests with the text "sampled-ok".
"""

import asyncio
import json
import sys
import textwrap

import mcp
import mcp_types as types
from mcp.client.sse import sse_client


async def sampling(ctx, params):
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="sampled-ok"), model="test"
    )


async def main():
    url = sys.argv[1]
    transport = sys.argv[2] if len(sys.argv) > 2 else "http"
    code = sys.stdin.read()
    results = []
    server = sse_client(url) if transport == "sse" else url
    async with mcp.Client(server, sampling_callback=sampling) as c:
        ns = {"c": c, "types": types, "out": results.append, "json": json, "asyncio": asyncio}
        exec("async def __scenario():\n" + textwrap.indent(code, "    "), ns)
        await ns["__scenario"]()
    print(json.dumps(results))


asyncio.run(main())
