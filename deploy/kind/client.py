"""Client of the kind end-to-end check: one chat completion through the node gateway.

Runs in a pod (deploy/kind/client-job.yaml) with the real openai SDK. It sends a W3C traceparent
with a fresh trace id and prints `TRACE_ID=<id>`, which run.sh then looks for in the collector's
span dump: the request went pod -> gateway (eBPF-steered or Service) -> provider-sim, and the
gateway exported a span in that trace. Exit status 0 means every check here passed.

Environment: GATEWAY_BASE_URL (required), GATEWAY_METRICS_URL (optional), E2E_MODEL (optional).
"""

from __future__ import annotations

import os
import secrets
import sys
import urllib.request

import openai


def fail(message: str) -> int:
    print(f"FAIL {message}", file=sys.stderr)
    return 1


def main() -> int:
    base_url = os.environ["GATEWAY_BASE_URL"]
    model = os.environ.get("E2E_MODEL", "gpt-4o-mini")
    trace_id = secrets.token_hex(16)
    parent_span = secrets.token_hex(8)

    # The gateway injects the provider key (backendAuth); the client's key must not matter.
    client = openai.OpenAI(base_url=base_url, api_key="client-key-is-replaced", max_retries=0, timeout=30.0)
    try:
        resp = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Say hello from the kind end-to-end check."}],
            extra_headers={"traceparent": f"00-{trace_id}-{parent_span}-01"},
        )
    except openai.APIError as err:
        return fail(f"chat completion through {base_url}: {err!r}")

    if not resp.choices or not (resp.choices[0].message.content or "").strip():
        return fail(f"empty completion: {resp.model_dump_json()}")
    if resp.usage is None or resp.usage.prompt_tokens <= 0 or resp.usage.completion_tokens <= 0:
        return fail(f"completion without token usage: {resp.usage!r}")
    print(
        f"OK completion model={resp.model} prompt_tokens={resp.usage.prompt_tokens} "
        f"completion_tokens={resp.usage.completion_tokens}"
    )
    print(f"TRACE_ID={trace_id}")

    metrics_url = os.environ.get("GATEWAY_METRICS_URL")
    if metrics_url:
        try:
            with urllib.request.urlopen(metrics_url, timeout=10) as r:
                body = r.read().decode("utf-8", "replace")
        except OSError as err:
            return fail(f"metrics at {metrics_url}: {err!r}")
        samples = [line for line in body.splitlines() if line and not line.startswith("#")]
        if not samples:
            return fail(f"metrics at {metrics_url} returned no samples")
        print(f"OK metrics {metrics_url}: {len(samples)} samples")
        for line in samples:
            if "token" in line:
                print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
