"""AWS Bedrock and Vertex AI through the openai and anthropic SDKs.

The simulator plays both clouds faithfully enough to fail a wrong gateway: Bedrock's Converse
and ConverseStream (binary event-stream frames, strict body validation, SigV4 verified against
its known key, a simulated STS for IRSA's AssumeRoleWithWebIdentity) and Vertex AI (Gemini's
generateContent, Claude's rawPredict, a simulated OAuth token endpoint whose tokens alone open
the Vertex paths). The gateway gets its credentials the way it would on a node: environment,
shared credentials file, web identity, a service-account key file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import anthropic
import openai
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import CLIENT_KEY, CONFIG_HEAD, assert_no_leaks, load_error
from opskit import metric

# The simulator's static AWS key (tests/src/sim/cloud.rs).
AWS_KEY_ID = "AKIDSIMULATOREXAMPLE"
AWS_SECRET = "sim/Secret+Access/Key0EXAMPLE"
NOVA = "amazon.nova-lite-v1:0"
CLAUDE_BEDROCK = "anthropic.claude-3-5-haiku-20241022-v1:0"
CLAUDE_VERTEX = "claude-sonnet-4-5@20250929"
MSG = [{"role": "user", "content": "hello there"}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

CLOUD = CONFIG_HEAD + """llm:
  port: {port}
  policies:
    guardrails:
      response:
      - regex: {rules: [{builtin: ssn}]}
  models:
  - name: gpt
    provider: openAI
    params: {hostOverride: "{sim}", apiKey: "sk-test-secret", model: gpt-4o-mini}
  - name: nova
    provider: bedrock
    params: {awsRegion: us-east-1, hostOverride: "{sim}", model: "amazon.nova-lite-v1:0"}
  - name: claude-bedrock
    provider: bedrock
    params: {awsRegion: eu-west-1, hostOverride: "{sim}", model: "anthropic.claude-3-5-haiku-20241022-v1:0"}
  - name: broken-bedrock
    provider: bedrock
    params: {awsRegion: us-east-1, hostOverride: "{sim}", model: "fault-429-amazon.nova-lite-v1:0"}
  - name: down-bedrock
    provider: bedrock
    params: {awsRegion: us-east-1, hostOverride: "{sim}", model: "fault-500-amazon.nova-lite-v1:0"}
    visibility: internal
  - name: gemini-vertex
    provider: vertex
    params: {vertexProject: sim-project, vertexRegion: us-central1, hostOverride: "{sim}", model: gemini-2.5-flash}
  - name: claude-vertex
    provider: vertex
    params: {vertexProject: sim-project, vertexRegion: us-east5, hostOverride: "{sim}", model: "claude-sonnet-4-5@20250929"}
  virtualModels:
  - name: any-cloud
    routing:
      failover:
        targets:
        - {model: down-bedrock, priority: 0}
        - {model: gemini-vertex, priority: 1}
"""


def service_account(tmp: Path, sim, lifetime: int = 3600) -> Path:
    """A service-account key file (a fresh RSA key) whose token_uri is the simulator's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp / f"sa-{lifetime}.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "sim-project", "private_key_id": "k1",
        "private_key": pem, "client_email": "gateway@sim-project.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": f"{sim}/token?lifetime={lifetime}",
    }))
    return path


def cloud_env(tmp: Path, sim, **extra: str) -> dict[str, str]:
    """Credentials as a node would have them; nothing from this machine's own files."""
    env = {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "GOOGLE_APPLICATION_CREDENTIALS": str(service_account(tmp, sim)),
    }
    env.update(extra)
    return env


@pytest.fixture
def gw(sim, gateway_factory, tmp_path):
    return gateway_factory(CLOUD, env_vars=cloud_env(tmp_path, sim))


def oa(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)


def an(gw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=CLIENT_KEY, max_retries=0, timeout=20)


def sigv4_scope(recorded: dict) -> str:
    auth = recorded["headers"]["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential="), auth
    return auth.split("Credential=")[1].split(",")[0]


def test_bedrock_chat_plain_and_streamed_through_openai(sim, gw):
    c = oa(gw)
    r = c.chat.completions.create(model="nova", messages=[{"role": "system", "content": "Be brief."}] + MSG,
                                  max_tokens=64)
    text = r.choices[0].message.content
    assert text and r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    [sent] = sim.requests("bedrock.converse")
    assert sent["path"] == "/model/amazon.nova-lite-v1%3A0/converse"
    scope = sigv4_scope(sent)
    assert scope.startswith(f"{AWS_KEY_ID}/") and scope.endswith("/us-east-1/bedrock/aws4_request"), scope
    assert sent["status"] == 200, "the simulator verified the signature"
    assert sent["body"]["system"] == [{"text": "Be brief."}]
    assert sent["body"]["inferenceConfig"]["maxTokens"] == 64
    assert "model" not in sent["body"] and "stream" not in sent["body"]
    assert_no_leaks(sim.requests())

    chunks = list(c.chat.completions.create(model="nova", messages=[{"role": "system", "content": "Be brief."}] + MSG,
                                            max_tokens=64, stream=True, stream_options={"include_usage": True}))
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == text, "ConverseStream's frames carry the same answer"
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = [ch.usage for ch in chunks if ch.usage]
    assert len(usage) == 1 and usage[0].completion_tokens == r.usage.completion_tokens
    [streamed_req] = sim.requests("bedrock.converse_stream")
    assert streamed_req["path"].endswith("/converse-stream") and streamed_req["status"] == 200

    line = gw.wait_for_access_log(2)[-1]
    assert line["llm.provider"] == "aws.bedrock"
    assert line["llm.response.tokens"] == r.usage.completion_tokens
    out = gw.output()
    assert AWS_SECRET not in out and "x-amz-security-token" not in out


@pytest.mark.parametrize("model", ["nova", "claude-bedrock", "gemini-vertex", "claude-vertex"])
def test_same_answer_and_tokens_as_openai(sim, gw, model):
    """The simulated model answers every provider with the same words and token counts for the
    same prompt: what the client sees through a translation must be exactly OpenAI's."""
    c = oa(gw)
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Tell me a joke about proxies"}]
    want = c.chat.completions.create(model="gpt", messages=msgs)
    got = c.chat.completions.create(model=model, messages=msgs)
    assert got.choices[0].message.content == want.choices[0].message.content
    assert (got.usage.prompt_tokens, got.usage.completion_tokens) == (want.usage.prompt_tokens, want.usage.completion_tokens)
    assert got.choices[0].finish_reason == "stop"
    assert all(r["status"] == 200 for r in sim.requests())


@pytest.mark.parametrize("fault", ["midstream-error", "reset"])
def test_a_broken_bedrock_stream_ends_with_an_error(sim, gw, fault):
    stream = oa(gw).chat.completions.create(model="nova", messages=MSG, stream=True,
                                            extra_headers={"x-sim-fault": fault})
    got, error = [], None
    try:
        for ch in stream:
            got.append(ch)
    except (openai.APIError, Exception) as e:  # noqa: BLE001 - a reset surfaces as an httpx error
        error = e
    assert error is not None, "a broken stream must not end cleanly"
    assert not [ch for ch in got if ch.choices and ch.choices[0].finish_reason], "nor look finished"
    if fault == "midstream-error":
        assert "overloaded" in str(error).lower(), repr(error)
    [line] = gw.wait_for_access_log(1)
    assert line.get("error"), line
    with pytest.raises(anthropic.APIError) as e:
        with an(gw).messages.stream(model="claude-bedrock", max_tokens=50, messages=MSG,
                                    extra_headers={"x-sim-fault": "midstream-error"}) as s:
            "".join(s.text_stream)
    assert "overloaded" in str(e.value).lower()


def test_guardrails_mask_bedrock_and_vertex_streams(sim, gw):
    reply = {"x-sim-reply": "Your ssn is 123-45-6789, noted."}
    for model in ["nova", "gemini-vertex", "claude-vertex"]:
        plain = oa(gw).chat.completions.create(model=model, messages=MSG, extra_headers=reply)
        assert plain.choices[0].message.content == "Your ssn is <SSN>, noted.", model
        chunks = oa(gw).chat.completions.create(model=model, messages=MSG, extra_headers=reply, stream=True)
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text == "Your ssn is <SSN>, noted.", model


TRACING = """
  tracing:
    otlpEndpoint: {otlp}
    otlpProtocol: grpc
    randomSampling: true
    fields:
      add:
        gen_ai.system: "llm.provider"
        gen_ai.usage.completion_tokens: "llm.output_tokens"
"""


def test_spans_and_metrics_name_the_cloud_provider(sim, gateway_factory, tmp_path, rotel):
    head, rest = CLOUD.split("config:\n", 1)
    gw = gateway_factory(head + "config:\n" + TRACING.lstrip("\n") + rest,
                         env_vars=cloud_env(tmp_path, sim), otlp=rotel.grpc_endpoint)
    c = oa(gw)
    want = c.chat.completions.create(model="gpt", messages=MSG).usage
    list(c.chat.completions.create(model="nova", messages=MSG, stream=True))
    an(gw).messages.create(model="claude-vertex", max_tokens=100, messages=MSG)
    for model, provider in [("nova", "aws.bedrock"), ("claude-vertex", "gcp.vertex_ai")]:
        [server] = rotel.wait_for_span(where=lambda s: s.kind == "SPAN_KIND_SERVER"
                                       and s.attributes.get("gen_ai.request.model") == model)
        a = server.attributes
        assert a["gen_ai.provider.name"] == provider and a["gen_ai.system"] == provider
        assert a["gen_ai.usage.output_tokens"] == a["gen_ai.usage.completion_tokens"] == want.completion_tokens
        assert a["gen_ai.usage.input_tokens"] == want.prompt_tokens
        [client] = rotel.wait_for_span(where=lambda s: s.kind == "SPAN_KIND_CLIENT" and s.trace_id == server.trace_id)
        assert client.parent_id == server.span_id
    assert metric(gw, "agentgateway_gen_ai_client_token_usage_count", gen_ai_system="aws.bedrock",
                  gen_ai_token_type="output") == 1
    assert metric(gw, "agentgateway_gen_ai_client_token_usage_sum", gen_ai_system="gcp.vertex_ai",
                  gen_ai_token_type="output") == want.completion_tokens
    everything = rotel.output()
    assert AWS_SECRET not in everything and "ya29.sim-" not in everything and CLIENT_KEY not in everything


def test_bedrock_tool_calls_plain_and_streamed(sim, gw):
    c = oa(gw)
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = c.chat.completions.create(model="claude-bedrock", messages=ask, tools=[WEATHER_TOOL], tool_choice="required")
    [call] = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and r.choices[0].finish_reason == "tool_calls"
    args = json.loads(call.function.arguments)
    assert set(args) >= {"city"}
    sent = sim.requests("bedrock.converse")[-1]["body"]
    assert sent["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    assert "any" in sent["toolConfig"]["toolChoice"]

    chunks = list(c.chat.completions.create(model="claude-bedrock", messages=ask, tools=[WEATHER_TOOL],
                                            tool_choice="required", stream=True))
    parts = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert parts[0].function.name == "get_weather" and parts[0].id == call.id
    assert json.loads("".join(p.function.arguments or "" for p in parts)) == args

    # The tool's answer goes back as Converse's toolResult in a user turn.
    follow = ask + [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                    {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]
    r2 = c.chat.completions.create(model="claude-bedrock", messages=follow, tools=[WEATHER_TOOL])
    assert "sunny" in r2.choices[0].message.content
    last = sim.requests("bedrock.converse")[-1]["body"]["messages"][-1]
    assert last["role"] == "user" and last["content"][0]["toolResult"]["toolUseId"] == call.id


def test_bedrock_through_the_anthropic_sdk(sim, gw):
    c = an(gw)
    m = c.messages.create(model="claude-bedrock", max_tokens=100, system="Be brief.", messages=MSG)
    assert m.content[0].type == "text" and m.content[0].text
    assert m.stop_reason == "end_turn" and m.usage.output_tokens > 0
    with c.messages.stream(model="claude-bedrock", max_tokens=100, system="Be brief.", messages=MSG) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == m.content[0].text and final.usage.output_tokens == m.usage.output_tokens
    assert [r["status"] for r in sim.requests() if r["endpoint"].startswith("bedrock")] == [200, 200]


def test_bedrock_errors_reach_each_client_in_its_shape(sim, gw):
    with pytest.raises(openai.RateLimitError) as e:
        oa(gw).chat.completions.create(model="broken-bedrock", messages=MSG)
    assert "ThrottlingException" in str(e.value)
    with pytest.raises(anthropic.RateLimitError) as e:
        an(gw).messages.create(model="broken-bedrock", max_tokens=10, messages=MSG)
    assert "ThrottlingException" in str(e.value)
    # Converse has no embeddings: a clear 400 instead of a provider 404.
    with pytest.raises(openai.BadRequestError) as e:
        oa(gw).embeddings.create(model="nova", input="x")
    assert "not supported by provider aws.bedrock" in str(e.value)


def test_a_wrong_secret_is_refused_by_the_simulated_bedrock(sim, gateway_factory, tmp_path):
    env = cloud_env(tmp_path, sim, AWS_SECRET_ACCESS_KEY="not-the-secret")
    gw = gateway_factory(CLOUD, env_vars=env)
    with pytest.raises(openai.PermissionDeniedError) as e:
        oa(gw).chat.completions.create(model="nova", messages=MSG)
    assert "InvalidSignatureException" in str(e.value)


def test_shared_credentials_file(sim, gateway_factory, tmp_path):
    creds = tmp_path / "aws-credentials"
    creds.write_text(f"[default]\naws_access_key_id = {AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n")
    env = cloud_env(tmp_path, sim, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="",
                    AWS_SHARED_CREDENTIALS_FILE=str(creds))
    gw = gateway_factory(CLOUD, env_vars=env)
    assert oa(gw).chat.completions.create(model="nova", messages=MSG).choices[0].message.content
    assert sigv4_scope(sim.requests("bedrock.converse")[-1]).startswith(AWS_KEY_ID)


def test_web_identity_credentials_for_irsa(sim, gateway_factory, tmp_path):
    """IRSA: a projected service-account token and a role; the AWS SDK's web identity provider
    calls STS (the simulator's), and the temporary key signs with its session token."""
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.sig")
    env = cloud_env(tmp_path, sim, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="",
                    AWS_ROLE_ARN="arn:aws:iam::123456789012:role/agent-gateway",
                    AWS_WEB_IDENTITY_TOKEN_FILE=str(token), AWS_ROLE_SESSION_NAME="gw",
                    AWS_ENDPOINT_URL_STS=str(sim), AWS_REGION="us-east-1")
    gw = gateway_factory(CLOUD, env_vars=env)
    c = oa(gw)
    for _ in range(3):
        assert c.chat.completions.create(model="nova", messages=MSG).choices[0].message.content
    [sts] = sim.requests("sts.assume_role_with_web_identity")
    assert "WebIdentityToken=" in (sts.get("body_text") or "") and sts["status"] == 200
    sent = sim.requests("bedrock.converse")
    assert len(sent) == 3 and all(r["status"] == 200 for r in sent)
    assert sigv4_scope(sent[0]).startswith("ASIASIM")
    assert sent[0]["headers"]["x-amz-security-token"].startswith("sim-session-token-")


def test_no_aws_credentials_is_a_clear_500(sim, gateway_factory, tmp_path):
    env = cloud_env(tmp_path, sim, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")
    gw = gateway_factory(CLOUD, env_vars=env)
    start = time.monotonic()
    with pytest.raises(openai.InternalServerError) as e:
        oa(gw).chat.completions.create(model="nova", messages=MSG)
    assert "no credentials for the provider" in str(e.value) and "AWS" in str(e.value)
    assert time.monotonic() - start < 10
    assert sim.requests("bedrock.converse") == []


def test_vertex_gemini_plain_and_streamed_with_a_service_account(sim, gw):
    c = oa(gw)
    r = c.chat.completions.create(model="gemini-vertex", messages=MSG)
    assert r.choices[0].message.content and r.usage.completion_tokens > 0
    chunks = list(c.chat.completions.create(model="gemini-vertex", messages=MSG, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == r.choices[0].message.content
    plain, streamed = sim.requests("gemini.generate"), sim.requests("gemini.stream")
    assert plain[0]["path"] == "/v1/projects/sim-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
    assert streamed[0]["query"] == "alt=sse"
    assert plain[0]["headers"]["authorization"].startswith("Bearer ya29.sim-")
    assert plain[0]["status"] == streamed[0]["status"] == 200
    # One token for both requests: cached.
    assert len(sim.requests("google.token")) == 1
    assert_no_leaks(sim.requests())
    line = gw.wait_for_access_log(2)[-1]
    assert line["llm.provider"] == "gcp.vertex_ai"
    assert "ya29.sim-" not in gw.output()


def test_vertex_claude_through_the_anthropic_sdk(sim, gw):
    c = an(gw)
    m = c.messages.create(model="claude-vertex", max_tokens=100, messages=MSG)
    assert m.content[0].text and m.usage.output_tokens > 0
    with c.messages.stream(model="claude-vertex", max_tokens=100, messages=MSG) as s:
        assert "".join(s.text_stream) == m.content[0].text
    sent = sim.requests("vertex.anthropic")[0]
    assert sent["path"] == "/v1/projects/sim-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    assert sent["body"]["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent["body"]
    assert sim.requests("vertex.anthropic.stream")[0]["status"] == 200
    counted = c.messages.count_tokens(model="claude-vertex", messages=MSG)
    assert counted.input_tokens == m.usage.input_tokens
    sent = sim.requests("vertex.anthropic")[-1]
    assert sent["path"].endswith("/publishers/anthropic/models/count-tokens:rawPredict")
    assert sent["body"]["model"] == CLAUDE_VERTEX and sent["status"] == 200
    # And an OpenAI client to the same Claude on Vertex.
    r = oa(gw).chat.completions.create(model="claude-vertex", messages=MSG)
    assert r.choices[0].message.content == m.content[0].text


def test_vertex_tokens_are_refreshed_before_they_expire(sim, gateway_factory, tmp_path):
    # A 22 s token: gcp_auth renews 20 s before expiry, so it is stale after 2 s.
    env = cloud_env(tmp_path, sim, GOOGLE_APPLICATION_CREDENTIALS=str(service_account(tmp_path, sim, 22)))
    gw = gateway_factory(CLOUD, env_vars=env)
    c = oa(gw)
    c.chat.completions.create(model="gemini-vertex", messages=MSG)
    c.chat.completions.create(model="gemini-vertex", messages=MSG)
    assert len(sim.requests("google.token")) == 1
    time.sleep(2.5)
    c.chat.completions.create(model="gemini-vertex", messages=MSG)
    assert len(sim.requests("google.token")) == 2
    used = [r["headers"]["authorization"] for r in sim.requests("gemini.generate")]
    assert used[0] == used[1] != used[2]


def test_failover_from_bedrock_to_vertex(sim, gw):
    raw = oa(gw).chat.completions.with_raw_response.create(model="any-cloud", messages=MSG)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-gateway-target"] == "gemini-vertex" and raw.headers["x-gateway-attempts"] == "2"
    assert [r["status"] for r in sim.requests("bedrock.converse")] == [500]
    assert metric(gw, "agentgateway_upstream_retries_total", backend="down-bedrock", reason="status 500") == 1


ROUTE = CONFIG_HEAD + """binds:
- port: {port}
  listeners:
  - routes:
    - policies:
        backendAuth:
          aws: {accessKeyId: "AKIDSIMULATOREXAMPLE", secretAccessKey: "sim/Secret+Access/Key0EXAMPLE"}
      backends:
      - ai:
          name: bedrock
          hostOverride: "{sim}"
          provider:
            bedrock: {region: ap-south-1, model: "amazon.nova-lite-v1:0", guardrailIdentifier: gr-1, guardrailVersion: "2"}
"""


def test_route_backend_with_explicit_keys_and_a_guardrail(sim, gateway_factory, tmp_path):
    env = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    gw = gateway_factory(ROUTE, env_vars=env)
    r = oa(gw).chat.completions.create(model="whatever", messages=MSG)
    assert r.choices[0].message.content
    [sent] = sim.requests("bedrock.converse")
    assert sent["path"] == "/model/amazon.nova-lite-v1%3A0/converse"
    assert sigv4_scope(sent).endswith("/ap-south-1/bedrock/aws4_request")
    assert sent["body"]["guardrailConfig"] == {"guardrailIdentifier": "gr-1", "guardrailVersion": "2"}
    assert requests.get(f"{gw.url}/v1/models", timeout=5).status_code == 400


@pytest.mark.parametrize("yaml_text,where", [
    ("""llm:\n  models:\n  - name: m\n    provider: bedrock\n""", "llm.models[0].params.awsRegion"),
    ("""llm:\n  models:\n  - name: m\n    provider: vertex\n    params: {vertexRegion: us-east5}\n""",
     "llm.models[0].params.vertexProject"),
    ("""llm:\n  models:\n  - name: m\n    provider: bedrock\n    params: {awsRegion: "us east"}\n""",
     "llm.models[0].params.awsRegion"),
    ("""binds:\n- port: 1\n  listeners:\n  - routes:\n    - backends:\n      - ai:\n          provider: {bedrock: {region: us-east-1, guardrailIdentifier: g}}\n""",
     "provider.bedrock"),
    ("""binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies: {backendAuth: {aws: {accessKeyId: AKID}}}\n      backends:\n      - ai: {provider: {bedrock: {region: us-east-1}}}\n""",
     "policies.backendAuth.aws"),
    ("""binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies: {backendAuth: {gcp: {credential: "not json"}}}\n      backends:\n      - ai: {provider: {vertex: {projectId: p}}}\n""",
     "policies.backendAuth.gcp.credential"),
    ("""binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies: {backendAuth: {aws: {assumeRole: {roleArn: "arn:aws:iam::1:role/r"}}}}\n      backends:\n      - ai: {provider: {bedrock: {region: us-east-1}}}\n""",
     "policies.backendAuth.aws.assumeRole"),
])
def test_bad_cloud_config_names_the_yaml_path(tmp_path, yaml_text, where):
    err = load_error(tmp_path, yaml_text)
    assert where in err, err
