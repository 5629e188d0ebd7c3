"""A real Prometheus server scrapes the gateway's statsAddr while LLM traffic (plain and
streamed, OpenAI and Anthropic) flows; its query API must return the same token counts the
gateway logged, and streamed requests must count exactly like plain ones."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import anthropic
import openai
import pytest
import requests

from conftest import CLIENT_KEY, free_port, stop_process, wait_until


def _prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        assert os.environ.get("CI") != "true", "prometheus missing under CI=true (tests/scripts/install-deps.sh installs it)"
        pytest.skip("prometheus not installed")
    return path


def test_prometheus_scrapes_token_usage(llm_gateway, tmp_path):
    binary = _prometheus()
    stats_port = llm_gateway.stats_port
    prom_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"- job_name: gateway\n  static_configs: [{{targets: ['127.0.0.1:{stats_port}']}}]\n"
    )
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{prom_port}"
    try:
        def ready():
            try:
                return requests.get(f"{base}/-/ready", timeout=1).ok
            except requests.RequestException:
                return False

        wait_until(ready, 60, what="prometheus ready")

        oa = openai.OpenAI(base_url=f"{llm_gateway.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0)
        an = anthropic.Anthropic(base_url=f"{llm_gateway.url}/anthropic", api_key=CLIENT_KEY, max_retries=0)
        model = f"prom-{int(time.time() * 1000)}"
        expected_in = expected_out = 0
        plain = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "count me please"}])
        expected_in += plain.usage.prompt_tokens
        expected_out += plain.usage.completion_tokens
        streamed_usage = None
        for chunk in oa.chat.completions.create(model=model, stream=True, stream_options={"include_usage": True},
                                                messages=[{"role": "user", "content": "count me please"}]):
            if chunk.usage:
                streamed_usage = chunk.usage
        assert streamed_usage is not None
        expected_in += streamed_usage.prompt_tokens
        expected_out += streamed_usage.completion_tokens
        msg = an.messages.create(model=model, max_tokens=32, messages=[{"role": "user", "content": "and me"}])
        expected_in += msg.usage.input_tokens
        expected_out += msg.usage.output_tokens

        def query(q: str):
            r = requests.get(f"{base}/api/v1/query", params={"query": q}, timeout=5).json()
            assert r["status"] == "success", r
            return r["data"]["result"]

        def totals():
            res = query(f'sum by (gen_ai_token_type) (agentgateway_gen_ai_client_token_usage_sum{{gen_ai_request_model="{model}"}})')
            got = {r["metric"]["gen_ai_token_type"]: float(r["value"][1]) for r in res}
            return got if got.get("input") == expected_in and got.get("output") == expected_out else None

        got = wait_until(totals, 20, interval=0.5, what="prometheus to see the token counts")
        assert got == {"input": expected_in, "output": expected_out}
        count = query(f'sum(agentgateway_gen_ai_client_token_usage_count{{gen_ai_request_model="{model}",gen_ai_token_type="output"}})')
        assert float(count[0]["value"][1]) == 3, "each request, streamed or not, is one observation"
        targets = requests.get(f"{base}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        assert targets and all(t["health"] == "up" for t in targets), targets
    finally:
        stop_process(proc)
        log.close()
