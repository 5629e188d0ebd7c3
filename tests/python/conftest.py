"""Shared fixtures for the gateway's black-box tests.

Everything runs on loopback and every process is started and stopped by PID:

- ``sim``: the Rust provider simulator (``target/<profile>/provider-sim``). The fixture value
  is the simulator's base URL (a ``str``) with helpers: ``sim.port``, ``sim.hostport``,
  ``sim.requests()`` (what the simulator received, headers included), ``sim.reset()``.
- ``gateway_factory``: ``start(yaml_text, **placeholders) -> Gateway``. Fills ``{port}``,
  ``{ready_port}``, ``{stats_port}``, ``{admin_port}``, ``{sim}`` (``127.0.0.1:PORT``),
  ``{sim_port}``, ``{sim_url}`` and any keyword given, starts ``target/<profile>/gateway -f``,
  and waits for ``/healthz/ready`` on the readiness port.
- ``module_gateway_factory``: the same, shared by a test module.
- ``rotel``: an OTLP receiver that prints every span; ``rotel.wait_for_span(...)``.
- ``free_port()``.

``GATEWAY_PROFILE=release`` selects release binaries; ``CARGO_TARGET_DIR`` is honoured.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
PROFILE = os.environ.get("GATEWAY_PROFILE", "debug")
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BIN_DIR = TARGET / PROFILE

READY_TIMEOUT = 20.0
STOP_GRACE = 5.0


def pytest_configure(config: pytest.Config) -> None:
    # The anthropic SDK warns about model deprecation dates; irrelevant to a simulator.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:anthropic.*")
    config.addinivalue_line("filterwarnings", "ignore:The model .* is deprecated:DeprecationWarning")


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago, and not handed out before in this
    session (the kernel may offer the same ephemeral port to consecutive ``bind(0)`` calls, so
    one gateway could otherwise get it for both its stats and admin servers)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no fresh free port after 100 tries")


def binary(name: str) -> Path:
    path = BIN_DIR / name
    if not path.exists():
        pytest.fail(
            f"{path} does not exist: build it first (cargo build{' --release' if PROFILE == 'release' else ''})",
            pytrace=False,
        )
    return path


def stop_process(proc: subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; by PID only."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        pass


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<unreadable>"


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Polls ``check`` until it returns something truthy; returns it or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Provider simulator


class Sim(str):
    """The simulator's base URL, with introspection helpers."""

    port: int
    proc: subprocess.Popen

    def __new__(cls, port: int, proc: subprocess.Popen) -> "Sim":
        obj = super().__new__(cls, f"http://127.0.0.1:{port}")
        obj.port = port
        obj.proc = proc
        return obj

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def requests(self, endpoint: str | None = None) -> list[dict]:
        """Requests the simulator received, oldest first; optionally only one endpoint
        (``openai.chat``, ``anthropic.messages``, ``gemini.stream``, ...)."""
        got = requests.get(f"{self}/_sim/requests", timeout=5).json()
        if endpoint is not None:
            got = [r for r in got if r.get("endpoint") == endpoint]
        return got

    def reset(self) -> None:
        requests.post(f"{self}/_sim/reset", timeout=5).raise_for_status()


def start_sim(log_dir: Path, allow_anonymous: bool = False) -> Sim:
    port_file = log_dir / "sim.port"
    out = open(log_dir / "sim.log", "wb")
    cmd = [str(binary("provider-sim")), "--listen", "127.0.0.1:0", "--port-file", str(port_file)]
    if allow_anonymous:
        cmd.append("--allow-anonymous")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    try:
        port = int(wait_until(lambda: port_file.exists() and port_file.read_text().strip(), 10, what="provider-sim port file"))
        sim = Sim(port, proc)
        wait_until(lambda: _ok(f"{sim}/health"), 10, what="provider-sim /health")
    except Exception:
        stop_process(proc)
        raise
    return sim


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="session")
def sim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterable[Sim]:
    sim = start_sim(tmp_path_factory.mktemp("sim"))
    yield sim
    stop_process(sim.proc)


@pytest.fixture
def sim(sim_server: Sim) -> Sim:
    """The shared simulator, with its request log cleared for this test."""
    if sim_server.proc.poll() is not None:
        pytest.fail(f"provider-sim exited with {sim_server.proc.returncode}", pytrace=False)
    sim_server.reset()
    return sim_server


# ---------------------------------------------------------------------------------------------
# Gateway


_TEXT_LOG = re.compile(r"^(?P<ts>\S+)\t(?P<level>\w+)\t(?P<scope>[\w.:-]+)\t(?P<rest>.*)$")


def parse_log_line(line: str) -> dict | None:
    """Parses one access-log line, text (``ts\\tinfo\\trequest\\tk=v k="quoted"``) or JSON;
    returns the fields as a dict (values as str/int/float), or None for other lines."""
    line = line.rstrip("\n")
    if line.startswith("{"):
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        return obj if obj.get("scope") == "request" else None
    m = _TEXT_LOG.match(line)
    if not m or m.group("scope") != "request":
        return None
    fields: dict[str, Any] = {"timestamp": m.group("ts"), "level": m.group("level"), "scope": "request"}
    rest, i = m.group("rest"), 0
    decoder = json.JSONDecoder()
    while i < len(rest):
        if rest[i] == " ":
            i += 1
            continue
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq]
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            value, i = decoder.raw_decode(rest, i)
        else:
            end = rest.find(" ", i)
            end = len(rest) if end < 0 else end
            raw = rest[i:end]
            i = end
            value = int(raw) if re.fullmatch(r"-?\d+", raw) else raw
        fields[key] = value
    return fields


@dataclass
class Gateway:
    proc: subprocess.Popen
    port: int
    ready_port: int
    stats_port: int
    admin_port: int
    config_path: Path
    stdout_path: Path
    stderr_path: Path
    placeholders: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        """stdout and stderr together (for "never logs X" checks)."""
        return self.stdout() + self.stderr()

    def log_mark(self) -> int:
        """Size of stdout once it has stopped growing for 100 ms (a request that just returned
        may still have its access-log line on the way: the line is written after the response,
        by the telemetry and writer threads); pass to ``access_log(since=...)`` to see only
        newer lines."""
        size, since = self.stdout_path.stat().st_size, time.monotonic()
        deadline = since + 2.0
        while time.monotonic() < deadline:
            time.sleep(0.02)
            now = self.stdout_path.stat().st_size
            if now != size:
                size, since = now, time.monotonic()
            elif time.monotonic() - since >= 0.1:
                break
        return size

    def access_log(self, since: int = 0) -> list[dict]:
        with open(self.stdout_path, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return [p for p in (parse_log_line(l) for l in text.splitlines()) if p is not None]

    def wait_for_access_log(self, count: int = 1, since: int = 0, timeout: float = 5.0,
                            where: Callable[[dict], bool] | None = None) -> list[dict]:
        """Waits until at least ``count`` access-log lines (matching ``where``) were written
        after ``since``; returns them."""
        def check():
            lines = [l for l in self.access_log(since) if where is None or where(l)]
            return lines if len(lines) >= count else None
        try:
            return wait_until(check, timeout, what=f"{count} access-log line(s)")
        except TimeoutError:
            raise AssertionError(
                f"expected {count} access-log line(s); stdout tail:\n{tail(self.stdout_path)}"
            ) from None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        stop_process(self.proc)
        return self.proc.returncode


class GatewayFactory:
    def __init__(self, tmp: Path, sim: Sim | None):
        self.tmp = tmp
        self.sim = sim
        self.started: list[Gateway] = []

    def __call__(self, config_text: str, wait_ready: bool = True, env_vars: dict[str, str] | None = None,
                 **extra: Any) -> Gateway:
        n = len(self.started)
        ports = {"port": free_port(), "ready_port": free_port(), "stats_port": free_port(), "admin_port": free_port()}
        values: dict[str, str] = {k: str(v) for k, v in ports.items()}
        if self.sim is not None:
            values.update(sim=self.sim.hostport, sim_port=str(self.sim.port), sim_url=str(self.sim))
        values.update({k: str(v) for k, v in extra.items()})
        text = config_text
        # Explicit replacement, not str.format: YAML flow mappings use braces too.
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        leftover = re.findall(r"\{(sim|sim_port|sim_url|port|ready_port|stats_port|admin_port)\}", text)
        if leftover:
            raise ValueError(f"unfilled placeholders {leftover} (no simulator?)")
        cfg = self.tmp / f"gateway-{n}.yaml"
        cfg.write_text(text)
        out_path, err_path = self.tmp / f"gateway-{n}.stdout", self.tmp / f"gateway-{n}.stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            env = dict(os.environ)
            env.setdefault("RUST_BACKTRACE", "1")
            env.update(env_vars or {})
            proc = subprocess.Popen(
                [str(binary("gateway")), "-f", str(cfg)],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=self.tmp,
            )
        gw = Gateway(proc, ports["port"], ports["ready_port"], ports["stats_port"], ports["admin_port"],
                     cfg, out_path, err_path, values)
        self.started.append(gw)
        if wait_ready:
            self.wait_ready(gw)
        return gw

    @staticmethod
    def wait_ready(gw: Gateway, timeout: float = READY_TIMEOUT) -> None:
        url = f"http://127.0.0.1:{gw.ready_port}/healthz/ready"

        def check():
            if not gw.alive():
                raise AssertionError(
                    f"gateway exited with {gw.proc.returncode} before it was ready\n"
                    f"--- stderr ---\n{tail(gw.stderr_path)}\n--- stdout ---\n{tail(gw.stdout_path)}"
                )
            return _ok(url)

        try:
            wait_until(check, timeout, interval=0.1, what=url)
        except TimeoutError:
            gw.stop()
            raise AssertionError(
                f"gateway not ready on {url} after {timeout}s\n--- stderr ---\n{tail(gw.stderr_path)}"
            ) from None

    def close(self) -> None:
        for gw in self.started:
            gw.stop()


@pytest.fixture
def gateway_factory(tmp_path: Path, sim_server: Sim) -> Iterable[GatewayFactory]:
    factory = GatewayFactory(tmp_path, sim_server)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_gateway_factory(tmp_path_factory: pytest.TempPathFactory, sim_server: Sim) -> Iterable[GatewayFactory]:
    factory = GatewayFactory(tmp_path_factory.mktemp("gw"), sim_server)
    yield factory
    factory.close()


# ---------------------------------------------------------------------------------------------
# rotel (OTLP receiver printing spans)


@dataclass
class Span:
    name: str
    trace_id: str = ""
    span_id: str = ""
    parent_id: str = ""
    kind: str = ""
    status: str = ""
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)


_ATTR = re.compile(r"^\s*-> (?P<key>[^:]+): (?P<type>\w+)\((?P<value>.*)\)\s*$")
_FIELD = re.compile(r"^\s*(?P<key>Trace ID|Parent ID|ID|Name|Kind|Status code|Status message)\s*: ?(?P<value>.*)$")


def _attr_value(kind: str, raw: str) -> Any:
    if kind == "Int":
        return int(raw)
    if kind == "Double":
        return float(raw)
    if kind == "Bool":
        return raw == "true"
    return raw


def parse_rotel_spans(text: str) -> list[Span]:
    """Parses rotel's ``--debug-log traces --debug-log-verbosity detailed`` output."""
    spans: list[Span] = []
    resource: dict[str, Any] = {}
    section = None  # "resource" | "span" | "events"
    current: Span | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("ResourceSpans #"):
            resource, section, current = {}, None, None
            continue
        if stripped == "Resource attributes:":
            section = "resource"
            continue
        if stripped.startswith("Span #"):
            current = Span(name="", resource=dict(resource))
            spans.append(current)
            section = "span"
            continue
        if stripped.startswith(("Events:", "Links:", "SpanEvent #", "ScopeSpans #")):
            section = "events" if current else None
            continue
        m = _ATTR.match(line)
        if m:
            key, value = m.group("key").strip(), _attr_value(m.group("type"), m.group("value"))
            if section == "resource":
                resource[key] = value
            elif section == "span" and current is not None:
                current.attributes[key] = value
            continue
        f = _FIELD.match(line)
        if f and current is not None and section == "span":
            key, value = f.group("key"), f.group("value").strip()
            attr = {"Trace ID": "trace_id", "Parent ID": "parent_id", "ID": "span_id", "Name": "name",
                    "Kind": "kind", "Status code": "status", "Status message": "status_message"}[key]
            setattr(current, attr, value)
    return spans


@dataclass
class Rotel:
    proc: subprocess.Popen
    grpc_port: int
    http_port: int
    log_path: Path

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def spans(self) -> list[Span]:
        return parse_rotel_spans(self.output())

    def wait_for_span(self, name: str | None = None, where: Callable[[Span], bool] | None = None,
                      timeout: float = 15.0, count: int = 1) -> list[Span]:
        """Waits for ``count`` spans matching ``name`` (exact) and ``where``; returns them."""
        def check():
            found = [s for s in self.spans()
                     if (name is None or s.name == name) and (where is None or where(s))]
            return found if len(found) >= count else None
        try:
            return wait_until(check, timeout, interval=0.2, what=f"span {name!r}")
        except TimeoutError:
            names = sorted({s.name for s in self.spans()})
            raise AssertionError(f"no span {name!r} after {timeout}s; spans seen: {names}") from None


def rotel_binary() -> Path:
    import rotel  # the wheel carries the collector binary

    path = Path(rotel.__file__).parent / "rotel-agent"
    if not path.exists():
        pytest.fail(f"rotel-agent not found at {path}", pytrace=False)
    return path


@pytest.fixture
def rotel(tmp_path: Path) -> Iterable[Rotel]:
    yield from _rotel(tmp_path, ["traces"])


@pytest.fixture
def rotel_metrics(tmp_path: Path) -> Iterable[Rotel]:
    """rotel printing metrics as well as spans."""
    yield from _rotel(tmp_path, ["traces", "metrics"])


@pytest.fixture
def rotel_logs(tmp_path: Path) -> Iterable[Rotel]:
    """rotel printing log records as well as spans."""
    yield from _rotel(tmp_path, ["traces", "logs"])


def _rotel(tmp_path: Path, signals: list[str]) -> Iterable[Rotel]:
    grpc_port, http_port = free_port(), free_port()
    log = tmp_path / "rotel.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(rotel_binary()), "start",
             "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
             "--otlp-http-endpoint", f"127.0.0.1:{http_port}",
             "--exporter", "blackhole",
             *[a for sig in signals for a in ("--debug-log", sig)], "--debug-log-verbosity", "detailed",
             # Its default pid file is shared by every rotel on the machine.
             "--pid-file", str(tmp_path / "rotel.pid")],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    r = Rotel(proc, grpc_port, http_port, log)

    def listening():
        if proc.poll() is not None:
            raise AssertionError(f"rotel exited with {proc.returncode}:\n{tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", http_port), timeout=0.5):
                return True
        except OSError:
            return False

    try:
        wait_until(listening, 15, interval=0.1, what="rotel")
        yield r
    finally:
        stop_process(proc)


# ---------------------------------------------------------------------------------------------
# The standard LLM gateway configuration the test_llm* modules share.

OPENAI_SECRET = "sk-test-secret"
ANTHROPIC_SECRET = "sk-ant-test-secret"
GEMINI_SECRET = "gm-test-secret"
AZURE_SECRET = "az-test-secret"
SECRETS = (OPENAI_SECRET, ANTHROPIC_SECRET, GEMINI_SECRET, AZURE_SECRET)
# What the SDK clients send; the gateway must replace it with the backend key.
CLIENT_KEY = "sk-client-key-must-not-leak"

# The head of a test config: the gateway's own ports, which GatewayFactory fills. A module adds
# its own `config:` entries below it.
CONFIG_HEAD = """
config:
  readinessAddr: 127.0.0.1:{ready_port}
  statsAddr: 127.0.0.1:{stats_port}
  adminAddr: 127.0.0.1:{admin_port}
"""

# One route, every path: OpenAI-shaped requests to the simulator with the backend key injected.
SIM_OPENAI_ROUTE = """binds:
- port: {port}
  listeners:
  - routes:
    - backends: [{ai: {name: oa, provider: {openAI: {}}, hostOverride: "{sim}"}}]
      policies: {backendAuth: {key: "sk-test-secret"}}
"""

# agentgateway standalone format. Route prefixes: /openai, /anthropic (native), /oa2an (OpenAI
# clients, Anthropic backend), /an2oa (Anthropic clients, OpenAI backend), /gemini, /azure,
# /slow (1 s request timeout), /dead (nothing listens upstream).
LLM_CONFIG = """
config:
  readinessAddr: 127.0.0.1:{ready_port}
  statsAddr: 127.0.0.1:{stats_port}
  adminAddr: 127.0.0.1:{admin_port}
binds:
- port: {port}
  listeners:
  - name: default
    routes:
    - name: openai
      matches: [{path: {pathPrefix: /openai}}]
      backends:
      - ai:
          name: openai
          provider: {openAI: {}}
          hostOverride: "{sim}"
      policies:
        backendAuth: {key: "sk-test-secret"}
    - name: anthropic
      matches: [{path: {pathPrefix: /anthropic}}]
      backends:
      - ai: {name: anthropic, provider: {anthropic: {}}, hostOverride: "{sim}"}
      policies:
        backendAuth: {key: "sk-ant-test-secret"}
    - name: oa2an
      matches: [{path: {pathPrefix: /oa2an}}]
      backends:
      - ai: {name: anthropic-for-openai-clients, provider: {anthropic: {}}, hostOverride: "{sim}"}
      policies:
        backendAuth: {key: "sk-ant-test-secret"}
    - name: an2oa
      matches: [{path: {pathPrefix: /an2oa}}]
      backends:
      - ai: {name: openai-for-anthropic-clients, provider: {openAI: {}}, hostOverride: "{sim}"}
      policies:
        backendAuth: {key: "sk-test-secret"}
    - name: gemini
      matches: [{path: {pathPrefix: /gemini}}]
      backends:
      - ai: {name: gemini, provider: {gemini: {}}, hostOverride: "{sim}"}
      policies:
        backendAuth: {key: "gm-test-secret"}
    - name: azure
      matches: [{path: {pathPrefix: /azure}}]
      backends:
      - ai:
          name: azure
          provider: {azure: {resourceName: sim, resourceType: openAI, apiVersion: "2024-10-21"}}
          hostOverride: "{sim}"
      policies:
        backendAuth: {key: "az-test-secret"}
    - name: slow
      matches: [{path: {pathPrefix: /slow}}]
      backends:
      - ai: {name: openai-slow, provider: {openAI: {}}, hostOverride: "{sim}"}
      policies:
        backendAuth: {key: "sk-test-secret"}
        timeout: {requestTimeout: 1s}
    - name: dead
      matches: [{path: {pathPrefix: /dead}}]
      backends:
      - ai: {name: openai-dead, provider: {openAI: {}}, hostOverride: "127.0.0.1:{dead_port}"}
      policies:
        backendAuth: {key: "sk-test-secret"}
"""


@pytest.fixture(scope="module")
def llm_gateway(module_gateway_factory: GatewayFactory) -> Gateway:
    """One gateway running LLM_CONFIG, shared by a test module."""
    return module_gateway_factory(LLM_CONFIG, dead_port=free_port())


def assert_no_leaks(recorded: list[dict]) -> None:
    """The client's own key must not reach the provider in any header or the query."""
    for r in recorded:
        for name, value in r["headers"].items():
            assert CLIENT_KEY not in value, f"client key leaked upstream in header {name}"
        assert CLIENT_KEY not in (r.get("query") or ""), "client key leaked upstream in the query"


AI_BACKEND = "{ai: {name: oa, provider: {openAI: {}}}}"


def one_route(policy: str, backend: str = "{host: 127.0.0.1:1}") -> str:
    """A config of one route to ``backend`` whose ``policies`` block is the one-line ``policy``
    (``name: value``), for load-error tests."""
    return f"""
binds:
- port: 1
  listeners:
  - routes:
    - backends: [{backend}]
      policies:
        {policy}
"""


def load_error(tmp_path: Path, yaml_text: str) -> str:
    """Runs ``gateway --validate-only`` on ``yaml_text``: asserts it is refused without a panic
    and returns what it printed (which must name the YAML path)."""
    cfg = tmp_path / f"bad-{len(list(tmp_path.glob('bad-*.yaml')))}.yaml"
    cfg.write_text(yaml_text)
    run = subprocess.run([str(binary("gateway")), "-f", str(cfg), "--validate-only"],
                         capture_output=True, text=True, timeout=30)
    err = run.stderr + run.stdout
    assert run.returncode != 0, f"config was accepted:\n{yaml_text}\n{err}"
    assert "panicked" not in err, err
    return err


class Redis:
    """A real ``redis-server`` (Debian's) on a free loopback port, no persistence. ``stop()``
    kills it (by PID); ``start()`` brings it back on the same port."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server not installed (tests/scripts/install-deps.sh installs it)"
        self.log = self.tmp / f"redis-{self.port}.log"
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp), "--logfile", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        wait_until(lambda: self.cli("PING") == "PONG", 10, what=f"redis on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterable[Redis]:
    r = Redis(tmp_path)
    r.start()
    yield r
    r.stop()
