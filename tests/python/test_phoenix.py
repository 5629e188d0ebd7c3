"""Traces into a real Arize Phoenix (PyPI `arize-phoenix`, its own venv from install-deps.sh),
read back through Phoenix's REST API: a trace destination with `convention: openinference`
shows up as an LLM span with its model and token counts without any hand-written CEL, while
the block's own collector (rotel) keeps receiving the GenAI-convention spans.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterable

import pytest
import requests

from conftest import CLIENT_KEY, CONFIG_HEAD, SIM_OPENAI_ROUTE, free_port, stop_process, tail, wait_until

ROOT = Path(__file__).resolve().parents[2]
PHOENIX = Path(os.environ.get("GATEWAY_PHOENIX_VENV", ROOT / "target" / "phoenix-venv")) / "bin" / "phoenix"


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterable[str]:
    if not PHOENIX.exists():
        pytest.fail(f"Phoenix not installed at {PHOENIX} (tests/scripts/install-deps.sh)", pytrace=False)
    work = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = free_port(), free_port()
    env = dict(os.environ, PHOENIX_HOST="127.0.0.1", PHOENIX_PORT=str(port),
               PHOENIX_GRPC_PORT=str(grpc_port), PHOENIX_WORKING_DIR=str(work),
               PHOENIX_TELEMETRY_ENABLED="false", PHOENIX_ALLOW_EXTERNAL_RESOURCES="false")
    log = work / "phoenix.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(PHOENIX), "serve"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=work)
    url = f"http://127.0.0.1:{port}"

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"phoenix exited with {proc.returncode}:\n{tail(log)}")
        try:
            return requests.get(f"{url}/v1/projects", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        # First start runs its database migrations: a minute or two on 2 cores.
        wait_until(up, 240, interval=1.0, what="Phoenix to answer /v1/projects")
        yield url
    finally:
        stop_process(proc)


def phoenix_spans(url: str) -> list[dict]:
    r = requests.get(f"{url}/v1/projects/default/spans", params={"limit": 100}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]


# Phoenix's first start (database migrations) can take a minute or two on 2 cores.
@pytest.mark.timeout(420)
def test_openinference_destination_reads_as_an_llm_span_in_phoenix(sim, gateway_factory, rotel, phoenix):
    config = CONFIG_HEAD + """  tracing:
    otlpEndpoint: {rotel}
    randomSampling: true
    destinations:
    - name: phoenix
      otlpEndpoint: {phoenix}
      otlpProtocol: http
      convention: openinference
""" + SIM_OPENAI_ROUTE
    gw = gateway_factory(config, rotel=rotel.grpc_endpoint, phoenix=phoenix)
    r = requests.post(f"{gw.url}/v1/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {CLIENT_KEY}"},
                      json={"model": "gpt-4o-mini", "temperature": 0.25, "max_tokens": 50,
                            "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]

    # The gateway's SERVER span, as the primary collector got it (GenAI convention only).
    server = rotel.wait_for_span(where=lambda s: s.kind == "SPAN_KIND_SERVER")[-1]
    assert "openinference.span.kind" not in server.attributes

    def same_span_in_phoenix():
        return next((s for s in phoenix_spans(phoenix) if s["context"]["span_id"] == server.span_id), None)

    span = wait_until(same_span_in_phoenix, 60, interval=1.0, what="the SERVER span in Phoenix")
    assert span["context"]["trace_id"] == server.trace_id
    # Phoenix read our OpenInference names: an LLM span with model and token counts, which the
    # seeds' Phoenix block had to spell out in CEL. (Phoenix 20 also derives some of them from
    # the GenAI names on its own; these below come only from the convention.)
    assert span["span_kind"] == "LLM", span
    a = span["attributes"]
    assert a["llm.model_name"] == r.json()["model"], a  # the model that answered
    assert json.loads(a["llm.invocation_parameters"]) == {"temperature": 0.25, "max_tokens": 50}, a
    assert "llm.token_count.completion_details.reasoning" in a, a
    assert a["llm.token_count.prompt"] == usage["prompt_tokens"], a
    assert a["llm.token_count.completion"] == usage["completion_tokens"], a
    assert a["llm.token_count.total"] == usage["total_tokens"], a
    assert a["llm.provider"] == "openai", a
    # Nothing secret crossed over.
    assert "sk-test-secret" not in str(span) and CLIENT_KEY not in str(span)
