"""The admin server (``config.adminAddr``): ``/config_dump`` is the running config as JSON with
every secret redacted, ``/logging`` reads and changes the log filter at run time, and
``/readiness`` lists the start-up tasks.
"""

from __future__ import annotations

import json

import requests

from conftest import free_port, wait_until
from opskit import ANTHROPIC_ROUTE, CHAT, config, post_chat, rewrite

BACKEND_KEY = "sk-admin-dump-backend-key-1"
ENV_KEY = "sk-admin-dump-env-key-2"
OTLP_AUTH = "Basic b3RscC1hZG1pbi1kdW1wLTM="
MODIFIER_AUTH = "Bearer admin-dump-modifier-4"
SECRETS = (BACKEND_KEY, ENV_KEY, OTLP_AUTH, MODIFIER_AUTH, "b3RscC1hZG1pbi1kdW1wLTM")

ROUTES = f"""
    - name: openai
      matches: [{{path: {{pathPrefix: /openai}}}}]
      backends:
      - ai: {{name: openai, provider: {{openAI: {{}}}}, hostOverride: "{{sim}}"}}
      policies:
        backendAuth: {{key: "{BACKEND_KEY}"}}
    - name: from-env
      matches: [{{path: {{pathPrefix: /env}}}}]
      backends:
      - ai: {{name: openai-env, provider: {{openAI: {{}}}}, hostOverride: "{{sim}}"}}
      policies:
        backendAuth: {{key: $OPS_ADMIN_TEST_KEY}}
        requestHeaderModifier:
          set: {{Authorization: "{MODIFIER_AUTH}"}}
"""

TRACING = f"""
  logging: {{level: info}}
  tracing:
    otlpEndpoint: http://127.0.0.1:{{otlp_port}}
    otlpProtocol: http
    headers:
      Authorization: "{OTLP_AUTH}"
    randomSampling: true
"""


def admin(gw, method: str, path: str) -> requests.Response:
    return requests.request(method, f"http://127.0.0.1:{gw.admin_port}{path}", timeout=5)


def start(gateway_factory, monkeypatch):
    monkeypatch.setenv("OPS_ADMIN_TEST_KEY", ENV_KEY)
    monkeypatch.delenv("RUST_LOG", raising=False)  # it would override config.logging.level
    return gateway_factory(config(ROUTES, extra=TRACING), otlp_port=free_port())


def test_config_dump_is_json_without_secrets(sim, gateway_factory, monkeypatch):
    gw = start(gateway_factory, monkeypatch)
    r = admin(gw, "GET", "/config_dump")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    dump = r.json()
    assert dump["source"] == str(gw.config_path)
    routes = dump["config"]["binds"][0]["listeners"][0]["routes"]
    assert [rt["name"] for rt in routes] == ["openai", "from-env"]
    assert dump["config"]["config"]["tracing"]["otlpProtocol"] == "http"
    text = r.text
    for secret in SECRETS:
        assert secret not in text, f"/config_dump shows a secret ({secret[:12]}...)"
    assert routes[0]["policies"]["backendAuth"]["key"] == "<redacted>"
    assert dump["config"]["config"]["tracing"]["headers"]["Authorization"] == "<redacted>"
    assert routes[1]["policies"]["requestHeaderModifier"]["set"]["Authorization"] == "<redacted>"
    # The environment-expanded key really is in use (so its absence above means something).
    assert requests.post(f"{gw.url}/env/v1/chat/completions", json=CHAT, timeout=5).status_code == 200
    got = [r["headers"].get("authorization") for r in sim.requests()]
    assert got == [MODIFIER_AUTH] or got == [f"Bearer {ENV_KEY}"], got


def test_config_dump_follows_a_reload(sim, gateway_factory, monkeypatch):
    gw = start(gateway_factory, monkeypatch)
    rewrite(gw, config(ROUTES, ANTHROPIC_ROUTE, extra=TRACING))
    wait_until(lambda: len(admin(gw, "GET", "/config_dump").json()["config"]["binds"][0]["listeners"][0]["routes"]) == 3,
               3, what="/config_dump showing the reloaded config")
    text = admin(gw, "GET", "/config_dump").text
    assert "sk-ant-test-secret" not in text
    for secret in SECRETS:
        assert secret not in text


def test_logging_level_changes_at_run_time(sim, gateway_factory, monkeypatch):
    gw = start(gateway_factory, monkeypatch)
    assert admin(gw, "GET", "/logging").json() == {"level": "info"}

    def debug_lines_after(mark: int) -> list[str]:
        with open(gw.stdout_path, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        return [l for l in text.splitlines() if " DEBUG " in l or '"level":"DEBUG"' in l]

    mark = gw.log_mark()
    assert post_chat(gw).status_code == 200
    gw.wait_for_access_log(since=mark)
    assert debug_lines_after(mark) == [], "debug lines at level info"

    r = admin(gw, "POST", "/logging?level=debug")
    assert r.status_code == 200, r.text
    assert r.json() == {"level": "debug"}
    assert admin(gw, "GET", "/logging").json() == {"level": "debug"}
    mark = gw.log_mark()
    assert post_chat(gw).status_code == 200
    wait_until(lambda: debug_lines_after(mark), 5, what="debug lines after POST /logging?level=debug")

    # A typo is rejected and changes nothing (a bare word would otherwise be read as a target
    # name and silence every other log line).
    for bad in ("verbose", "debug,hyper=loud", "info,"):
        r = admin(gw, "POST", f"/logging?level={bad}")
        assert r.status_code == 400, f"{bad!r}: {r.status_code} {r.text}"
        assert "error" in r.json()
    assert admin(gw, "GET", "/logging").json() == {"level": "debug"}

    # Per-target directives work, and going back to info stops the debug lines.
    r = admin(gw, "POST", "/logging?level=info,gateway=debug")
    assert r.status_code == 200, r.text
    assert admin(gw, "POST", "/logging?level=info").status_code == 200
    mark = gw.log_mark()
    assert post_chat(gw).status_code == 200
    gw.wait_for_access_log(since=mark)
    assert debug_lines_after(mark) == [], "debug lines after going back to info"


def test_logging_requires_a_level(sim, gateway_factory, monkeypatch):
    gw = start(gateway_factory, monkeypatch)
    r = admin(gw, "POST", "/logging")
    assert r.status_code == 400
    assert "level=" in r.json()["error"]


def test_readiness_lists_the_start_up_tasks(sim, gateway_factory, monkeypatch):
    gw = start(gateway_factory, monkeypatch)
    r = admin(gw, "GET", "/readiness")
    assert r.status_code == 200
    body = r.json()
    assert body["ready"] is True and body["draining"] is False
    assert set(body["tasks"]) >= {"config", "telemetry", "ebpf", "listeners", "admin"}
    assert all(state == "done" for state in body["tasks"].values()), body
    assert requests.get(f"http://127.0.0.1:{gw.ready_port}/healthz/ready", timeout=5).status_code == 200


def test_admin_unknown_path_is_a_json_404(sim, gateway_factory, monkeypatch):
    gw = start(gateway_factory, monkeypatch)
    r = admin(gw, "GET", "/nope")
    assert r.status_code == 404
    assert json.loads(r.text)["error"]
