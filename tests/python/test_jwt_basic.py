"""``policies.jwtAuth`` and ``policies.basicAuth`` (agentgateway's ``LocalJwtConfig`` and
``LocalBasicAuth``) through the openai and anthropic SDKs: RS256 and ES256 tokens from a
JWKS file, claims in CEL (``jwt.*``), authorization and limits keyed by a claim, htpasswd
users (bcrypt, ``$apr1$``, ``{SHA}``) with the ``WWW-Authenticate`` challenge, and the
credential never reaching the provider or the log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time

import anthropic
import bcrypt
import jwt
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import load_error, one_route

ISSUER = "https://idp.example"

CONFIG = """
config:
  readinessAddr: 127.0.0.1:{ready_port}
  statsAddr: 127.0.0.1:{stats_port}
  adminAddr: 127.0.0.1:{admin_port}
  logging:
    fields:
      add:
        who: 'default(jwt.sub, "none")'
        team: 'default(jwt.team, "none")'
        basic_user: 'default(basicAuth.username, "none")'
binds:
- port: {port}
  listeners:
  - routes:
    - name: jwt
      matches: [{path: {pathPrefix: /jwt}}]
      backends: [{ai: {name: oa, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        jwtAuth:
          mode: strict
          issuer: "https://idp.example"
          audiences: [llm-gateway]
          jwks: {file: "{jwks}"}
        authorization:
          rules: [{deny: 'jwt.team == "banned"'}]
        localRateLimit:
        - maxTokens: 2
          tokensPerFill: 2
          fillInterval: 1h
          descriptors: [{key: user, value: jwt.sub}]
    - name: anthropic
      matches: [{path: {pathPrefix: /anthropic}}]
      backends: [{ai: {name: an, provider: {anthropic: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-ant-test-secret"}
        jwtAuth:
          mode: strict
          providers:
          - issuer: "https://idp.example"
            jwks: {file: "{jwks}"}
    - name: basic
      matches: [{path: {pathPrefix: /basic}}]
      backends: [{ai: {name: oa-basic, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies:
        backendAuth: {key: "sk-test-secret"}
        basicAuth:
          mode: strict
          realm: llm-gateway
          htpasswd: {file: "{htpasswd}"}
"""

MSG = [{"role": "user", "content": "who am I"}]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks = {"keys": [
        {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "rsa-1", "use": "sig"},
        {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "ec-1"},
    ]}
    (d / "jwks.json").write_text(json.dumps(jwks))
    apr1 = subprocess.run(["openssl", "passwd", "-apr1", "apr-pass"], capture_output=True, text=True,
                          check=True).stdout.strip()
    sha = "{SHA}" + base64.b64encode(hashlib.sha1(b"sha-pass").digest()).decode()
    bc = bcrypt.hashpw(b"bcrypt-pass", bcrypt.gensalt(rounds=5)).decode()
    (d / "htpasswd").write_text(f"# users\nann:{apr1}\nsam:{sha}\nbea:{bc}\n")
    return {"rsa": rsa_key, "ec": ec_key, "dir": d}


def token(keys, sub="alice", kid="rsa-1", alg="RS256", key="rsa", **claims):
    body = {"iss": ISSUER, "aud": "llm-gateway", "sub": sub, "exp": int(time.time()) + 600, **claims}
    return jwt.encode(body, keys[key], algorithm=alg, headers={"kid": kid} if kid else None)


@pytest.fixture(scope="module")
def gw(module_gateway_factory, keys):
    return module_gateway_factory(CONFIG, jwks=keys["dir"] / "jwks.json", htpasswd=keys["dir"] / "htpasswd")


def oa(gw, prefix, key, **headers):
    return openai.OpenAI(base_url=f"{gw.url}/{prefix}/v1", api_key=key, max_retries=0,
                         default_headers=headers or None)


def test_rs256_and_es256_tokens_are_the_caller(sim, gw, keys):
    sim.reset()
    mark = gw.log_mark()
    rs = token(keys, sub="alice", team="red")
    es = token(keys, sub="erin", kid="ec-1", alg="ES256", key="ec", team="blue")
    oa(gw, "jwt", rs).chat.completions.create(model="gpt-4o-mini", messages=MSG)
    oa(gw, "jwt", es).chat.completions.create(model="gpt-4o-mini", messages=MSG)
    lines = gw.wait_for_access_log(2, since=mark)
    assert [(l["who"], l["team"], l["jwt.sub"], l["jwt.iss"]) for l in lines] == [
        ("alice", "red", "alice", ISSUER), ("erin", "blue", "erin", ISSUER)]
    for r in sim.requests():
        assert r["headers"].get("authorization") == "Bearer sk-test-secret"
        for t in (rs, es):
            assert all(t not in v for v in r["headers"].values()), "the token went upstream"
    assert rs not in gw.output() and es not in gw.output()


@pytest.mark.parametrize("case,make", [
    ("missing", lambda k: None),
    ("expired", lambda k: token(k, exp=int(time.time()) - 3600)),
    ("wrong issuer", lambda k: token(k, iss="https://evil.example")),
    ("wrong audience", lambda k: token(k, aud="someone-else")),
    ("no kid", lambda k: token(k, kid=None)),
    ("unknown kid", lambda k: token(k, kid="rsa-9")),
    ("forged", lambda k: jwt.encode({"iss": ISSUER, "aud": "llm-gateway", "sub": "x",
                                     "exp": int(time.time()) + 60},
                                    rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                    algorithm="RS256", headers={"kid": "rsa-1"})),
    ("hs256 with the public key", lambda k: "eyJhbGciOiJIUzI1NiIsImtpZCI6InJzYS0xIn0.e30.x"),
])
def test_bad_tokens_are_401_in_the_clients_shape(sim, gw, keys, case, make):
    sim.reset()
    t = make(keys)
    # No token at all: the SDK's own Authorization header is left out.
    extra = {"Authorization": openai.Omit()} if t is None else {}
    with pytest.raises(openai.AuthenticationError) as e:
        oa(gw, "jwt", t or "unused").chat.completions.create(model="gpt-4o-mini", messages=MSG,
                                                             extra_headers=extra)
    assert e.value.status_code == 401
    assert e.value.body["message"].startswith("authentication failure: "), e.value.body
    assert sim.requests() == []


def test_claims_drive_authorization_and_per_user_limits(sim, gw, keys):
    with pytest.raises(openai.PermissionDeniedError):
        oa(gw, "jwt", token(keys, sub="mallory", team="banned")).chat.completions.create(
            model="gpt-4o-mini", messages=MSG)
    bob = oa(gw, "jwt", token(keys, sub="bob"))
    for _ in range(2):
        bob.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    with pytest.raises(openai.RateLimitError):
        bob.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    # Another user has a bucket of their own.
    oa(gw, "jwt", token(keys, sub="carol")).chat.completions.create(model="gpt-4o-mini", messages=MSG)


def test_anthropic_sdk_with_a_bearer_token_and_providers_form(sim, gw, keys):
    client = anthropic.Anthropic(base_url=f"{gw.url}/anthropic", auth_token=token(keys, sub="dora"),
                                 api_key=None, max_retries=0)
    mark = gw.log_mark()
    client.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=MSG)
    [line] = gw.wait_for_access_log(since=mark)
    assert line["jwt.sub"] == "dora"
    bad = anthropic.Anthropic(base_url=f"{gw.url}/anthropic", auth_token="not.a.jwt",
                              api_key=None, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="claude-sonnet-4-5", max_tokens=16, messages=MSG)
    assert e.value.body["error"]["message"].startswith("authentication failure: ")


@pytest.mark.parametrize("user,password", [("ann", "apr-pass"), ("sam", "sha-pass"), ("bea", "bcrypt-pass")])
def test_basic_auth_users_from_htpasswd(sim, gw, user, password):
    sim.reset()
    cred = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    mark = gw.log_mark()
    # The openai SDK sends its own Authorization; a default header replaces it.
    oa(gw, "basic", "unused", Authorization=cred).chat.completions.create(model="gpt-4o-mini", messages=MSG)
    [line] = gw.wait_for_access_log(since=mark)
    assert line["basicauth.user"] == user and line["basic_user"] == user
    [r] = sim.requests()
    assert r["headers"]["authorization"] == "Bearer sk-test-secret"
    assert password not in gw.output()


def test_basic_auth_failures_challenge_with_the_realm(sim, gw):
    for cred in (None, "Basic " + base64.b64encode(b"ann:wrong").decode(), "Basic %%%"):
        with pytest.raises(openai.AuthenticationError) as e:
            oa(gw, "basic", "unused").chat.completions.create(
                model="gpt-4o-mini", messages=MSG, extra_headers={"Authorization": cred or openai.Omit()})
        assert e.value.response.headers["www-authenticate"] == 'Basic realm="llm-gateway"'
        assert e.value.body["message"].startswith("basic authentication failure")


@pytest.mark.parametrize("policy,path", [
    ('jwtAuth: {issuer: i, jwks: {url: "https://idp/jwks"}}', "policies.jwtAuth.jwks.url"),
    ("jwtAuth: {jwks: {keys: []}}", "policies.jwtAuth.issuer"),
    ('jwtAuth: {issuer: i, jwks: "{broken"}', "policies.jwtAuth.jwks"),
    ("jwtAuth: {issuer: i, mode: sometimes, jwks: {keys: []}}", "policies.jwtAuth.mode"),
    ('basicAuth: {htpasswd: "u:plain"}', "policies.basicAuth.htpasswd (line 1)"),
    ("basicAuth: {htpasswd: {file: /nonexistent/htpasswd}}", "policies.basicAuth.htpasswd.file"),
])
def test_bad_auth_config_is_a_load_error_naming_the_path(tmp_path, policy, path):
    err = load_error(tmp_path, one_route(policy))
    assert path in err, err
