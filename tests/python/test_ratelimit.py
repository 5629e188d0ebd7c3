"""``policies.localRateLimit`` (agentgateway's ``RateLimitSpec[]``) through the openai and
anthropic SDKs: request and token buckets, 429 in each client's error shape with the
``x-ratelimit-*`` headers, the same headers on allowed responses, and token charges settled
with the real usage (streams included).
"""

from __future__ import annotations

import math

import anthropic
import openai
import pytest

from conftest import AI_BACKEND, CLIENT_KEY, load_error, one_route

CONFIG = """
config:
  readinessAddr: 127.0.0.1:{ready_port}
  statsAddr: 127.0.0.1:{stats_port}
  adminAddr: 127.0.0.1:{admin_port}
binds:
- port: {port}
  listeners:
  - routes:
    - name: requests
      matches: [{path: {pathPrefix: /requests}}]
      backends: [{ai: {name: oa, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        localRateLimit:
        - {maxTokens: 2, tokensPerFill: 1, fillInterval: 1h}
    - name: anthropic
      matches: [{path: {pathPrefix: /anthropic}}]
      backends: [{ai: {name: an, provider: {anthropic: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-ant-test-secret"}
        localRateLimit:
        - {maxTokens: 1, tokensPerFill: 1, fillInterval: 1h}
    - name: conditional
      matches: [{path: {pathPrefix: /conditional}}]
      backends: [{ai: {name: oa3, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        localRateLimit:
          conditional:
          - condition: 'request.headers["x-tier"] == "gold"'
            maxTokens: 3
            tokensPerFill: 3
            fillInterval: 1h
          - {maxTokens: 1, tokensPerFill: 1, fillInterval: 1h}
    - name: tokens
      matches: [{path: {pathPrefix: /tokens}}]
      backends: [{ai: {name: oa2, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        localRateLimit:
        - {maxTokens: 300, tokensPerFill: 300, fillInterval: 1h, type: tokens}
"""

MSG = [{"role": "user", "content": "count my tokens please"}]


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(CONFIG)


def oa(gw, prefix):
    return openai.OpenAI(base_url=f"{gw.url}/{prefix}/v1", api_key=CLIENT_KEY, max_retries=0)


def test_request_limit_429_in_each_clients_shape(sim, gw):
    client = oa(gw, "requests")
    remaining = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
        assert raw.headers["x-ratelimit-limit"] == "2"
        remaining.append(int(raw.headers["x-ratelimit-remaining"]))
        assert 0 <= int(raw.headers["x-ratelimit-reset"]) <= 3600
    assert remaining == [1, 0]
    mark = gw.log_mark()
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert e.value.status_code == 429
    assert e.value.response.headers["x-ratelimit-remaining"] == "0"
    assert e.value.body["type"] == "rate_limit_error" and e.value.body["message"] == "rate limit exceeded"
    assert len(sim.requests()) == 2, "the refused request must not reach the provider"
    # (The last allowed request's line may land after the mark too.)
    [line] = gw.wait_for_access_log(since=mark, where=lambda l: l["http.status"] == 429)

    an = anthropic.Anthropic(base_url=f"{gw.url}/anthropic", api_key=CLIENT_KEY, max_retries=0)
    an.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=MSG)
    with pytest.raises(anthropic.RateLimitError) as e:
        an.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=MSG)
    assert e.value.body["error"]["type"] == "rate_limit_error"
    assert e.value.response.headers["x-ratelimit-limit"] == "1"


def test_token_limit_charges_an_estimate_and_settles_real_usage(sim, gw):
    client = oa(gw, "tokens")
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
    first = raw.parse().usage
    est1 = math.ceil(len(raw.http_request.content) / 4)
    assert int(raw.headers["x-ratelimit-remaining"]) == 300 - est1
    # The next request sees the first one's real usage, and its own estimate.
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
    est2 = math.ceil(len(raw.http_request.content) / 4)
    assert int(raw.headers["x-ratelimit-remaining"]) == 300 - first.total_tokens - est2
    second = raw.parse().usage
    # A stream settles when it ends.
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}))
    third = chunks[-1].usage
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
    est4 = math.ceil(len(raw.http_request.content) / 4)
    used = first.total_tokens + second.total_tokens + third.total_tokens
    assert int(raw.headers["x-ratelimit-remaining"]) == 300 - used - est4
    # Spent: refused before the provider sees it.
    for _ in range(20):
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        except openai.RateLimitError:
            break
    else:
        pytest.fail("the token bucket never ran out")
    total = sum(r["status"] == 200 for r in sim.requests())
    assert total * first.total_tokens <= 300 + first.total_tokens


@pytest.mark.parametrize("spec,path", [
    ("{maxTokens: 1, fillInterval: 0s}", "localRateLimit[0].fillInterval"),
    ("{maxTokens: 1, tokensPerFill: 5, fillInterval: 1s}", "localRateLimit[0].maxTokens"),
    ("{maxTokens: 1, fillInterval: 1s, type: bytes}", "localRateLimit[0].type"),
])
def test_bad_limit_is_a_load_error_naming_the_path(tmp_path, spec, path):
    err = load_error(tmp_path, one_route(f"localRateLimit: [{spec}]", AI_BACKEND))
    assert path in err, err


def test_conditional_form_applies_the_first_entry_that_holds(sim, gw):
    gold = openai.OpenAI(base_url=f"{gw.url}/conditional/v1", api_key=CLIENT_KEY, max_retries=0,
                         default_headers={"x-tier": "gold"})
    for left in (2, 1, 0):
        raw = gold.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
        assert (raw.headers["x-ratelimit-limit"], raw.headers["x-ratelimit-remaining"]) == ("3", str(left))
    with pytest.raises(openai.RateLimitError):
        gold.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    # Everyone else gets the fallback, a bucket of its own.
    other = oa(gw, "conditional")
    assert other.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MSG).headers["x-ratelimit-limit"] == "1"
    with pytest.raises(openai.RateLimitError):
        other.chat.completions.create(model="gpt-4o-mini", messages=MSG)
