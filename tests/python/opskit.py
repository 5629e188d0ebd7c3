"""Helpers for the operational black-box tests (``test_ops*.py``, ``test_robustness*.py``):
filling a config for a running gateway, a steady-load thread, Prometheus scraping, fd counts,
and starting a gateway on a config path of the test's choosing (symlinks).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import requests

from conftest import Gateway, GatewayFactory, binary, free_port

# A common base: the three side servers on loopback, and one OpenAI route to the simulator.
HEAD = """
config:
  readinessAddr: 127.0.0.1:{ready_port}
  statsAddr: 127.0.0.1:{stats_port}
  adminAddr: 127.0.0.1:{admin_port}
"""

OPENAI_ROUTE = """
    - name: openai
      matches: [{path: {pathPrefix: /openai}}]
      backends:
      - ai: {name: openai, provider: {openAI: {}}, hostOverride: "{sim}"}
      policies:
        backendAuth: {key: "sk-test-secret"}
"""

ANTHROPIC_ROUTE = """
    - name: anthropic
      matches: [{path: {pathPrefix: /anthropic}}]
      backends:
      - ai: {name: anthropic, provider: {anthropic: {}}, hostOverride: "{sim}"}
      policies:
        backendAuth: {key: "sk-ant-test-secret"}
"""

BINDS = """
binds:
- port: {port}
  listeners:
  - name: default
    routes:
"""

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude-sonnet-4-5", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}


def config(*routes: str, extra: str = "") -> str:
    """HEAD + ``extra`` (more lines under ``config:``) + binds with ``routes``."""
    return HEAD + extra + BINDS + "".join(routes)


def fill(text: str, values: dict[str, str]) -> str:
    """Replaces ``{name}`` placeholders like ``GatewayFactory`` does (not str.format: YAML
    flow mappings use braces too)."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def rewrite(gw: Gateway, text: str) -> None:
    """Replaces the gateway's config file atomically (write a sibling, rename over it), the way
    editors and config-management tools do."""
    tmp = gw.config_path.with_suffix(".tmp")
    tmp.write_text(fill(text, gw.placeholders))
    os.replace(tmp, gw.config_path)


def chat_url(gw: Gateway, prefix: str = "/openai") -> str:
    return f"{gw.url}{prefix}/v1/chat/completions"


def post_chat(gw: Gateway, prefix: str = "/openai", timeout: float = 5.0, **kw) -> requests.Response:
    return requests.post(chat_url(gw, prefix), json=CHAT, timeout=timeout, **kw)


def words(n: int) -> str:
    """A user message of ``n`` words: the simulator streams one event per reply word
    (``Hello from the simulator. You said: <words>``), so stream length is ``n + 6`` pieces."""
    return " ".join(f"w{i}" for i in range(n))


# === metrics ===


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric(gw: Gateway, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``; 0 when absent."""
    text = requests.get(f"http://127.0.0.1:{gw.stats_port}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group("name") != name:
            continue
        got = dict(_LABEL.findall(m.group("labels") or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group("value"))
    return total


def metrics_text(gw: Gateway) -> str:
    return requests.get(f"http://127.0.0.1:{gw.stats_port}/metrics", timeout=5).text


def ready_status(gw: Gateway) -> int | None:
    """``/healthz/ready`` status, or None when the readiness server does not answer."""
    try:
        return requests.get(f"http://127.0.0.1:{gw.ready_port}/healthz/ready", timeout=1).status_code
    except requests.RequestException:
        return None


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# === steady load ===


class Load(threading.Thread):
    """Sends ``send(session)`` in a loop until stopped; counts successes and keeps every
    failure (an exception, or a ``requests.Response`` whose status is not 200) for the
    assertion message. Any other return value (an SDK object) is a success."""

    def __init__(self, send, pause: float = 0.01):
        super().__init__(daemon=True)
        self.send = send
        self.pause = pause
        self.ok = 0
        self.failures: list[str] = []
        self._stop_evt = threading.Event()

    def run(self) -> None:
        with requests.Session() as s:
            while not self._stop_evt.is_set():
                try:
                    r = self.send(s)
                    if isinstance(r, requests.Response) and r.status_code != 200:
                        self.failures.append(f"{r.status_code}: {r.text[:200]}")
                    else:
                        self.ok += 1
                except Exception as e:  # noqa: BLE001 - every failure counts
                    self.failures.append(repr(e))
                time.sleep(self.pause)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=15)

    def __enter__(self) -> "Load":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# === a gateway on a path of our choosing ===


def start_gateway_at(factory: GatewayFactory, path: Path, text: str, layout=None) -> Gateway:
    """Like ``factory(text)`` (without waiting for readiness), but runs ``gateway -f path``, for
    symlinked config paths. ``layout(filled_text)`` writes the files; by default the filled
    config is written to ``path``."""
    n = len(factory.started)
    ports = {"port": free_port(), "ready_port": free_port(), "stats_port": free_port(), "admin_port": free_port()}
    values = {k: str(v) for k, v in ports.items()}
    if factory.sim is not None:
        values.update(sim=factory.sim.hostport, sim_port=str(factory.sim.port), sim_url=str(factory.sim))
    filled = fill(text, values)
    if layout is None:
        path.write_text(filled)
    else:
        layout(filled)
    out_path, err_path = factory.tmp / f"gateway-at-{n}.stdout", factory.tmp / f"gateway-at-{n}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([str(binary("gateway")), "-f", str(path)], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, cwd=factory.tmp)
    gw = Gateway(proc, ports["port"], ports["ready_port"], ports["stats_port"], ports["admin_port"],
                 path, out_path, err_path, values)
    factory.started.append(gw)
    return gw
