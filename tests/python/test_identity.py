"""Caller identity: ``policies.apiKey`` (agentgateway's ``LocalAPIKeys``) through the openai
and anthropic SDKs: keys in plain or as ``sha256:`` hashes, modes, ``allowedModels``, the key
removed before the provider, and the caller in the access log and CEL (metadata, a stable key
id), never the key.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import anthropic
import openai
import pytest
import requests

from conftest import AI_BACKEND, load_error, one_route
from opskit import metric, metrics_text

TEAM_KEY = "sk-team-red-0123456789"
MINI_KEY = "sk-mini-only-abcdef"
ANT_KEY = "sk-ant-caller-key-xyz"

CONFIG = """
config:
  readinessAddr: 127.0.0.1:{ready_port}
  statsAddr: 127.0.0.1:{stats_port}
  adminAddr: 127.0.0.1:{admin_port}
  logging:
    fields:
      add:
        team: 'default(apiKey.team, "none")'
        key_shown: 'default(apiKey.key, "none")'
binds:
- port: {port}
  listeners:
  - routes:
    - name: openai
      matches: [{path: {pathPrefix: /openai}}]
      backends: [{ai: {name: oa, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        apiKey:
          mode: strict
          keys:
          - key: "{team_key}"
            metadata: {team: red, user: alice}
          - keyHash: "sha256:{mini_hash}"
            metadata: {team: blue}
            allowedModels: ["gpt-4o-mini*", "*-nano"]
    - name: anthropic
      matches: [{path: {pathPrefix: /anthropic}}]
      backends: [{ai: {name: an, provider: {anthropic: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-ant-test-secret"}
        apiKey:
          mode: strict
          keys: [{key: "{ant_key}", metadata: {team: green}}]
    - name: xkey
      matches: [{path: {pathPrefix: /xkey}}]
      backends: [{ai: {name: an2, provider: {anthropic: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-ant-test-secret"}
        apiKey:
          mode: strict
          location: {header: {name: x-api-key}}
          keys: [{key: "{ant_key}"}]
"""

MSG = [{"role": "user", "content": "who am I"}]


@pytest.fixture(scope="module")
def gw(module_gateway_factory):
    return module_gateway_factory(CONFIG, team_key=TEAM_KEY, ant_key=ANT_KEY,
                                  mini_hash=hashlib.sha256(MINI_KEY.encode()).hexdigest().upper())


def oa(gw, key):
    return openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key=key, max_retries=0)


def test_valid_key_passes_and_never_reaches_the_provider(sim, gw):
    mark = gw.log_mark()
    r = oa(gw, TEAM_KEY).chat.completions.create(model="gpt-4o", messages=MSG)
    assert r.choices[0].message.content
    [rec] = sim.requests()
    assert rec["headers"]["authorization"] == "Bearer sk-test-secret"
    assert TEAM_KEY not in str(rec)
    [line] = gw.wait_for_access_log(since=mark)
    assert line["team"] == "red"
    assert line["key_shown"] == "<redacted>"
    assert line["apikey.id"] == "sha256:" + hashlib.sha256(TEAM_KEY.encode()).hexdigest()[:12]
    assert TEAM_KEY not in gw.output()


def test_missing_and_unknown_keys_are_401_in_the_clients_shape(sim, gw):
    with pytest.raises(openai.AuthenticationError) as e:
        oa(gw, "sk-not-a-key").chat.completions.create(model="gpt-4o", messages=MSG)
    assert e.value.status_code == 401
    assert e.value.body["type"] == "authentication_error"
    assert e.value.body["message"] == "api key authentication failure: invalid credentials"
    an = anthropic.Anthropic(base_url=f"{gw.url}/anthropic", api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        an.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=MSG)
    assert e.value.body["error"]["type"] == "authentication_error"
    assert sim.requests() == []
    an = anthropic.Anthropic(base_url=f"{gw.url}/anthropic", api_key=ANT_KEY, max_retries=0)
    m = an.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=MSG)
    assert m.content[0].text
    [rec] = sim.requests()
    assert rec["headers"]["x-api-key"] == "sk-ant-test-secret"
    assert ANT_KEY not in str(rec)
    # A key in another header (`location`), as Anthropic's own clients send it.
    body = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": MSG}
    ok = requests.post(f"{gw.url}/xkey/v1/messages", json=body, headers={"x-api-key": ANT_KEY}, timeout=5)
    assert ok.status_code == 200, ok.text
    bad = requests.post(f"{gw.url}/xkey/v1/messages", json=body, headers={"x-api-key": "nope"}, timeout=5)
    assert bad.status_code == 401 and bad.json()["error"]["type"] == "authentication_error"


def test_allowed_models(sim, gw):
    mini = oa(gw, MINI_KEY)
    assert mini.chat.completions.create(model="gpt-4o-mini", messages=MSG).choices
    assert mini.chat.completions.create(model="gpt-5-nano", messages=MSG).choices
    with pytest.raises(openai.PermissionDeniedError) as e:
        mini.chat.completions.create(model="gpt-4o", messages=MSG)
    assert "gpt-4o" in e.value.message and "not allowed" in e.value.message
    assert len(sim.requests()) == 2
    # The other key has no model restriction.
    assert oa(gw, TEAM_KEY).chat.completions.create(model="gpt-4o", messages=MSG).choices


@pytest.mark.parametrize("block,path", [
    ("{keys: [{keyHash: 'md5:abc'}]}", "apiKey.keys[0].keyHash"),
    ("{keys: [{key: a, allowedModels: ['a*b']}]}", "apiKey.keys[0].allowedModels"),
    ("{keys: [{key: a}], mode: lenient}", "apiKey.mode"),
])
def test_bad_api_key_config_names_the_path(tmp_path, block, path):
    err = load_error(tmp_path, one_route(f"apiKey: {block}", AI_BACKEND))
    assert path in err, err


AUTHZ = """
config:
  readinessAddr: 127.0.0.1:{ready_port}
  statsAddr: 127.0.0.1:{stats_port}
  adminAddr: 127.0.0.1:{admin_port}
binds:
- port: {port}
  listeners:
  - routes:
    - backends: [{ai: {name: oa, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        apiKey:
          keys:
          - {key: "{team_key}", metadata: {team: red}}
          - {key: "{mini_key}", metadata: {team: blue}}
        authorization:
          rules:
          - "apiKey.team == 'red'"
          - deny: 'request.headers["x-block"] == "1"'
"""


def test_authorization_rules_see_the_caller(sim, gateway_factory):
    gw = gateway_factory(AUTHZ, team_key=TEAM_KEY, mini_key=MINI_KEY)
    red = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=TEAM_KEY, max_retries=0)
    assert red.chat.completions.create(model="gpt-4o", messages=MSG).choices
    with pytest.raises(openai.PermissionDeniedError) as e:
        red.chat.completions.create(model="gpt-4o", messages=MSG, extra_headers={"x-block": "1"})
    assert e.value.body["message"] == "authorization failed"
    blue = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=MINI_KEY, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        blue.chat.completions.create(model="gpt-4o", messages=MSG)
    # No key (optional mode): the allow rule cannot read apiKey, so it does not allow.
    anon = requests.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-4o", "messages": MSG}, timeout=5)
    assert anon.status_code == 403
    assert len(sim.requests()) == 1


METRIC_LABELS = AUTHZ.replace("""binds:""", """  metrics:
    remove: [agentgateway_request_duration_seconds]
    fields:
      add:
        team: 'apiKey.team'
binds:""", 1).replace("""          - "apiKey.team == 'red'"
""", """          - "apiKey.team == 'red' || apiKey.team == 'blue'"
""")


def test_metric_labels_are_chosen_by_config(sim, gateway_factory):
    gw = gateway_factory(METRIC_LABELS, team_key=TEAM_KEY, mini_key=MINI_KEY)
    for key in (TEAM_KEY, MINI_KEY, MINI_KEY):
        openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0).chat.completions.create(
            model="gpt-4o", messages=MSG)
    assert metric(gw, "agentgateway_requests_total", team="red") == 1
    assert metric(gw, "agentgateway_requests_total", team="blue") == 2
    assert metric(gw, "agentgateway_gen_ai_client_token_usage_count", team="blue", gen_ai_token_type="input") == 2
    text = metrics_text(gw)
    assert "agentgateway_request_duration_seconds" not in text, "removed by config.metrics.remove"
    for key in (TEAM_KEY, MINI_KEY):
        assert key not in text
    promtool = shutil.which("promtool")
    if promtool is None:
        assert os.environ.get("CI") != "true", "promtool missing under CI=true"
        pytest.skip("promtool not installed")
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_bad_metric_label_is_a_load_error(tmp_path):
    err = load_error(tmp_path, "config: {metrics: {fields: {add: {route: 'apiKey.team'}}}}\nbinds: []\n")
    assert "config.metrics.fields.add.route" in err, err


LLM_SHORTHAND = """
config:
  readinessAddr: 127.0.0.1:{ready_port}
  statsAddr: 127.0.0.1:{stats_port}
  adminAddr: 127.0.0.1:{admin_port}
llm:
  port: {port}
  policies:
    apiKey:
      mode: strict
      keys:
      - {key: "{team_key}", metadata: {team: red}}
      - {key: "{mini_key}", metadata: {team: blue}, allowedModels: [gpt-4o-mini]}
    authorization:
      rules: [{deny: 'request.headers["x-block"] == "1"'}]
    localRateLimit:
    - {maxTokens: 2, tokensPerFill: 2, fillInterval: 1h, descriptors: [{key: k, value: apiKey.id}]}
    budgets:
    - {name: per-team, tokens: 1000000, window: day, descriptors: [{key: team, value: apiKey.team}]}
  models:
  - name: gpt-4o-mini
    provider: openAI
    params: {hostOverride: "{sim}", apiKey: "sk-test-secret"}
  - name: gpt-4o
    provider: openAI
    params: {hostOverride: "{sim}", apiKey: "sk-test-secret"}
"""


def test_llm_shorthand_takes_identity_and_limit_policies(sim, gateway_factory):
    gw = gateway_factory(LLM_SHORTHAND, team_key=TEAM_KEY, mini_key=MINI_KEY)
    red = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=TEAM_KEY, max_retries=0)
    blue = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=MINI_KEY, max_retries=0)
    raw = red.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
    assert raw.headers["x-ratelimit-remaining"] == "1"
    assert raw.headers["x-gateway-budget-remaining"] == "per-team=1000000"
    with pytest.raises(openai.PermissionDeniedError):
        red.chat.completions.create(model="gpt-4o", messages=MSG, extra_headers={"x-block": "1"})
    red.chat.completions.create(model="gpt-4o", messages=MSG)
    with pytest.raises(openai.RateLimitError):
        red.chat.completions.create(model="gpt-4o", messages=MSG)
    # Blue has its own bucket, and only the model its key allows.
    blue.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    with pytest.raises(openai.PermissionDeniedError) as e:
        blue.chat.completions.create(model="gpt-4o", messages=MSG)
    assert "gpt-4o" in e.value.body["message"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-nobody", max_retries=0).chat.completions.create(
            model="gpt-4o", messages=MSG)
    for r in sim.requests():
        assert TEAM_KEY not in str(r["headers"]) and MINI_KEY not in str(r["headers"])
