"""Limits shared across gateways through a real Redis (``config.redis``, our extension):
``globalRateLimit`` (agentgateway's ``RateLimitSpec`` with ``failureMode``), limits keyed by
caller (CEL ``descriptors``), and ``budgets`` (USD or tokens per rolling window, block or
audit). Two gateway processes share one ``redis-server``; killing it shows ``failOpen`` and
``failClosed`` as configured. Clients are the openai and anthropic SDKs.
"""

from __future__ import annotations

import concurrent.futures
import time

import anthropic
import openai
import pytest

from conftest import CLIENT_KEY, load_error, one_route, wait_until
from opskit import metric, metrics_text

HEAD = """
config:
  readinessAddr: 127.0.0.1:{ready_port}
  statsAddr: 127.0.0.1:{stats_port}
  adminAddr: 127.0.0.1:{admin_port}
  redis: {url: "{redis}", timeout: 200ms}
  modelCatalog:
  - inline:
      providers:
        openai:
          models:
            gpt-4o-mini: {rates: {input: "1000", output: "1000"}}
binds:
- port: {port}
  listeners:
  - routes:
"""

ROUTES = """
    - name: shared
      matches: [{path: {pathPrefix: /shared}}]
      backends: [{ai: {name: oa, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        globalRateLimit:
          limits: [{maxTokens: 5, tokensPerFill: 5, fillInterval: 1h}]
    - name: race
      matches: [{path: {pathPrefix: /race}}]
      backends: [{ai: {name: oa-race, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        globalRateLimit:
          limits: [{maxTokens: 7, tokensPerFill: 7, fillInterval: 1h}]
    - name: keyed
      matches: [{path: {pathPrefix: /keyed}}]
      backends: [{ai: {name: oa-keyed, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        globalRateLimit:
          limits:
          - maxTokens: 2
            tokensPerFill: 2
            fillInterval: 1h
            descriptors: [{key: team, value: 'request.headers["x-team"]'}]
        localRateLimit:
        - maxTokens: 1
          tokensPerFill: 1
          fillInterval: 1h
          descriptors: [{key: model, value: llm.requestModel}]
    - name: open
      matches: [{path: {pathPrefix: /open}}]
      backends: [{ai: {name: oa-open, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        globalRateLimit:
          failureMode: failOpen
          limits: [{maxTokens: 1000, tokensPerFill: 1000, fillInterval: 1h}]
    - name: closed
      matches: [{path: {pathPrefix: /closed}}]
      backends: [{ai: {name: oa-closed, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        globalRateLimit:
          failureMode: failClosed
          limits: [{maxTokens: 1000, tokensPerFill: 1000, fillInterval: 1h}]
    - name: tokens
      matches: [{path: {pathPrefix: /tokens}}]
      backends: [{ai: {name: oa-tokens, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        budgets:
        - {name: daily-tokens, tokens: 5, window: day}
    - name: usd
      matches: [{path: {pathPrefix: /usd}}]
      backends: [{ai: {name: oa-usd, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        budgets:
        - name: team-usd
          usd: "0.001"
          window: week
          descriptors: [{key: team, value: 'request.headers["x-team"]'}]
        - {name: watch, tokens: 1, window: month, onExceeded: audit}
    - name: both
      matches: [{path: {pathPrefix: /both}}]
      backends: [{ai: {name: oa-both, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        globalRateLimit:
          limits:
          - {maxTokens: 3, tokensPerFill: 3, fillInterval: 1h}
          - {maxTokens: 100000, tokensPerFill: 100000, fillInterval: 1h, type: tokens}
        budgets:
        - {name: both-daily, tokens: 100000, window: day}
    - name: anthropic
      matches: [{path: {pathPrefix: /anthropic}}]
      backends: [{ai: {name: an, provider: {anthropic: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-ant-test-secret"}
        budgets:
        - {name: claude, tokens: 5, window: day}
"""

MSG = [{"role": "user", "content": "count my tokens please"}]


def oa(gw, prefix, **headers):
    return openai.OpenAI(base_url=f"{gw.url}/{prefix}/v1", api_key=CLIENT_KEY, max_retries=0,
                         default_headers=headers or None)


def ask(gw, prefix, **headers):
    return oa(gw, prefix, **headers).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MSG)


@pytest.fixture
def pair(gateway_factory, redis_server):
    """Two gateways (two nodes) sharing one Redis."""
    cfg = HEAD + ROUTES
    return [gateway_factory(cfg, redis=redis_server.url) for _ in range(2)], redis_server


def bucket_keys(redis):
    return [k for k in redis.cli("--scan", "--pattern", "agw:rl*").splitlines() if k]


def test_two_gateways_share_one_limit(pair):
    (a, b), redis = pair
    allowed, refused = 0, 0
    for i in range(8):
        gw = (a, b)[i % 2]
        try:
            raw = ask(gw, "shared")
            allowed += 1
            assert raw.headers["x-ratelimit-limit"] == "5"
            assert int(raw.headers["x-ratelimit-remaining"]) == 5 - allowed
        except openai.RateLimitError as e:
            refused += 1
            assert e.response.headers["x-ratelimit-remaining"] == "0"
            assert 0 < int(e.response.headers["x-ratelimit-reset"]) <= 3600
    assert (allowed, refused) == (5, 3), "the limit holds across both gateways"
    assert len(bucket_keys(redis)) == 1


def test_racing_gateways_never_pass_more_than_the_limit(pair):
    (a, b), _ = pair

    def one(i):
        try:
            ask((a, b)[i % 2], "race")
            return 200
        except openai.RateLimitError:
            return 429

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(one, range(24)))
    assert codes.count(200) == 7 and codes.count(429) == 17


def test_limits_keyed_by_caller_and_model(pair):
    (a, b), _ = pair
    # Per team through Redis: each team gets its own 2, on either gateway.
    client = lambda gw, team: oa(gw, "keyed", **{"x-team": team})  # noqa: E731
    for team in ("red", "blue"):
        for gw in (a, b):
            # The local limit is per model and per gateway: use a different model each time.
            client(gw, team).chat.completions.create(model=f"gpt-{team}-{gw.port}", messages=MSG)
        with pytest.raises(openai.RateLimitError):
            client(a, team).chat.completions.create(model=f"gpt-{team}-x", messages=MSG)
    # The local model-keyed limit: a second request for the same model on one gateway.
    client(b, "green").chat.completions.create(model="gpt-4o-mini", messages=MSG)
    with pytest.raises(openai.RateLimitError):
        client(b, "green").chat.completions.create(model="gpt-4o-mini", messages=MSG)
    # No x-team header: the keyed global limit does not apply (the local one still does).
    oa(a, "keyed").chat.completions.create(model="gpt-nobody", messages=MSG)


def test_redis_down_fail_open_and_fail_closed(pair):
    (a, _), redis = pair
    ask(a, "open")
    ask(a, "closed")
    redis.stop()
    mark = a.log_mark()
    t = time.monotonic()
    raw = ask(a, "open")
    assert raw.status_code == 200, "failOpen lets the request through"
    with pytest.raises(openai.InternalServerError) as e:
        ask(a, "closed")
    assert e.value.status_code == 503
    assert "rate limit service unavailable" in e.value.body["message"]
    assert time.monotonic() - t < 5, "a dead Redis must not hang requests"
    lines = a.wait_for_access_log(2, since=mark)
    assert {l["http.status"] for l in lines} == {200, 503}
    assert all(l.get("redis.failure") in ("unavailable", "timeout") for l in lines), lines
    assert metric(a, "agentgateway_redis_failures_total", operation="rate_limit") >= 2
    # Redis back (empty): the connection is re-made and limits apply again.
    redis.start()
    wait_until(lambda: ask(a, "closed").status_code == 200, 15, interval=0.3,
               what="failClosed route serving again after Redis restarted")


def settled(redis, pattern):
    def total():
        keys = [k for k in redis.cli("--scan", "--pattern", pattern).splitlines() if k]
        s = 0
        for k in keys:
            vals = redis.cli("HVALS", k).split()
            s += sum(int(v) for v in vals)
        return s
    return wait_until(lambda: total() or None, 5, what=f"spend recorded under {pattern}")


def test_token_budget_blocks_across_gateways_and_restarts(pair, gateway_factory):
    (a, b), redis = pair
    raw = ask(a, "tokens")
    assert raw.headers["x-gateway-budget-remaining"] == "daily-tokens=5"
    spent = settled(redis, "agw:budget*")
    assert spent >= 5, spent
    mark = b.log_mark()
    with pytest.raises(openai.RateLimitError) as e:
        ask(b, "tokens")
    assert e.value.body["message"] == "budget `daily-tokens` exceeded"
    assert e.value.response.headers["x-gateway-budget-remaining"] == "daily-tokens=0"
    [line] = b.wait_for_access_log(since=mark)
    assert line["http.status"] == 429 and line["budget.exceeded"] == "daily-tokens"
    # A restarted gateway (a new process) still sees the spend: the state is in Redis.
    a.stop()
    c = gateway_factory(HEAD + ROUTES, redis=redis.url)
    with pytest.raises(openai.RateLimitError):
        ask(c, "tokens")
    assert metric(c, "agentgateway_budget_remaining", budget="daily-tokens") == 0
    assert metric(c, "agentgateway_budget_exceeded_total", budget="daily-tokens", action="block") == 1


def test_usd_budget_per_team_and_audit_budget(pair):
    (a, _), redis = pair
    mark = a.log_mark()
    raw = ask(a, "usd", **{"x-team": "red"})
    assert raw.headers["x-gateway-budget-remaining"] == "team-usd=0.001, watch=1"
    [line] = a.wait_for_access_log(since=mark)
    cost = float(line["agw.ai.usage.cost.total"])
    assert cost > 0.001, "at $1000/M tokens one request spends the whole budget"
    settled(redis, "agw:budget*team-usd*")
    # red is spent; blue has its own budget; `watch` (audit) is spent too but only marks.
    with pytest.raises(openai.RateLimitError):
        ask(a, "usd", **{"x-team": "red"})
    mark = a.log_mark()
    raw = ask(a, "usd", **{"x-team": "blue"})
    assert raw.status_code == 200
    assert raw.headers["x-gateway-budget-remaining"].startswith("watch=0")
    # (The refused request's line may land after the mark too.)
    [line] = a.wait_for_access_log(since=mark, where=lambda l: l["http.status"] == 200)
    assert line["budget.exceeded"] == "watch"
    assert metric(a, "agentgateway_budget_exceeded_total", budget="watch", action="audit") >= 1
    assert metric(a, "agentgateway_budget_remaining", budget="team-usd", key="blue") == pytest.approx(0.001)


def test_anthropic_sdk_gets_its_rate_limit_error_for_a_budget(pair):
    (a, _), redis = pair
    client = anthropic.Anthropic(base_url=f"{a.url}/anthropic", api_key=CLIENT_KEY, max_retries=0)
    client.messages.create(model="claude-sonnet-4-5", max_tokens=32, messages=MSG)
    settled(redis, "agw:budget*claude*")
    with pytest.raises(anthropic.RateLimitError) as e:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=32, messages=MSG)
    assert e.value.body["error"]["message"] == "budget `claude` exceeded"


def test_budget_without_redis_is_per_process(gateway_factory):
    routes = ROUTES[ROUTES.index("    - name: tokens"):ROUTES.index("    - name: usd")]
    cfg = HEAD.replace('  redis: {url: "{redis}", timeout: 200ms}\n', "") + routes
    gw = gateway_factory(cfg)
    ask(gw, "tokens")
    wait_until(lambda: _blocked(gw), 5, what="budget spent in this process")


def _blocked(gw):
    try:
        ask(gw, "tokens")
        return False
    except openai.RateLimitError:
        return True


def test_unreachable_redis_at_start_up(gateway_factory):
    from conftest import free_port
    gw = gateway_factory(HEAD + ROUTES, redis=f"redis://:hunter2@127.0.0.1:{free_port()}")
    assert ask(gw, "open").status_code == 200
    with pytest.raises(openai.InternalServerError):
        ask(gw, "closed")
    wait_until(lambda: "redis: unreachable" in gw.output(), 10, what="the start-up warning")
    out = gw.output()
    assert "failureMode" in out
    assert "hunter2" not in out and "hunter2" not in metrics_text(gw)


@pytest.mark.parametrize("policy,path", [
    ("globalRateLimit: {limits: [{maxTokens: 1, fillInterval: 1s}]}", "policies.globalRateLimit"),
    ("budgets: [{name: b, usd: ten, window: day}]", "policies.budgets[0].usd"),
    ("budgets: [{name: b, tokens: 1, window: fortnight}]", "policies.budgets[0].window"),
    ("localRateLimit: [{maxTokens: 1, fillInterval: 0s}]", "policies.localRateLimit[0].fillInterval"),
    ("localRateLimit: [{maxTokens: 1, fillInterval: 1s, descriptors: [{key: k, value: '1 +'}]}]",
     "policies.localRateLimit[0].descriptors[0].value"),
])
def test_bad_limits_are_load_errors_naming_the_path(tmp_path, policy, path):
    err = load_error(tmp_path, one_route(policy))
    assert path in err, err


def test_bad_redis_url_is_a_load_error(tmp_path):
    err = load_error(tmp_path, 'config: {redis: {url: "http://:pw@x"}}\nbinds: []\n')
    assert "config.redis.url" in err and "pw" not in err.replace("<redacted>", ""), err


def test_limit_and_budget_share_one_batch_and_both_hold(pair):
    (a, b), redis = pair
    raw = ask(a, "both")
    # The most constrained bucket is the request one (3), charged together with the tokens.
    assert (raw.headers["x-ratelimit-limit"], raw.headers["x-ratelimit-remaining"]) == ("3", "2")
    assert raw.headers["x-gateway-budget-remaining"] == "both-daily=100000"
    spent = settled(redis, "agw:budget*both-daily*")
    raw = ask(b, "both")
    assert raw.headers["x-ratelimit-remaining"] == "1"
    assert raw.headers["x-gateway-budget-remaining"] == f"both-daily={100000 - spent}"
    ask(a, "both")
    with pytest.raises(openai.RateLimitError):
        ask(b, "both")
    # Token buckets are settled with the real usage after each response: what the bucket lost
    # is exactly the tokens the three answered requests used (the refused one took none).
    served = [l for gw in (a, b) for l in gw.access_log()
              if l.get("route") == "both" and l["http.status"] == 200]
    assert len(served) == 3
    used = sum(l["llm.request.tokens"] + l["llm.response.tokens"] for l in served)

    def token_bucket_left():
        for k in bucket_keys(redis):
            avail = redis.cli("HGET", k, "a")
            if avail and int(float(avail)) > 3:
                return int(float(avail))
        return None
    wait_until(lambda: token_bucket_left() == 100000 - used, 5,
               what=f"token bucket at {100000 - used} (settled with the real usage)")
