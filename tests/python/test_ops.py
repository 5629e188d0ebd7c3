"""Hot reload through the running gateway: the config file is polled (inode, mtime, content)
and reloaded on change or SIGHUP; a valid config is swapped in without failing a request, an
invalid one is logged and counted and the last good config keeps serving.

Every reload test runs a steady-load thread (the real ``openai`` SDK, one keep-alive client) and
asserts it saw zero failures.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import openai
import pytest
import requests

from conftest import CLIENT_KEY, wait_until
from opskit import (ANTHROPIC_ROUTE, CHAT, HEAD, MESSAGES, OPENAI_ROUTE, Load, config, fill, metric,
                    ready_status, rewrite, start_gateway_at, words)

RELOADS = "agentgateway_config_reloads_total"
# The watcher polls every 0.5 s; a reload must be visible within this.
RELOAD_WITHIN = 2.0


def anthropic_status(gw) -> int:
    r = requests.post(f"{gw.url}/anthropic/v1/messages", json=MESSAGES, timeout=5,
                      headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"})
    return r.status_code


def openai_load(gw) -> Load:
    oa = openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0, timeout=5)
    return Load(lambda _s: oa.chat.completions.create(**CHAT))


def wait_for_route(gw, status: int = 200, within: float = RELOAD_WITHIN) -> float:
    """Waits until the /anthropic route answers ``status``; returns how long it took."""
    start = time.monotonic()
    wait_until(lambda: anthropic_status(gw) == status, within + 1, interval=0.05,
               what=f"/anthropic answering {status}")
    took = time.monotonic() - start
    assert took < within, f"reload took {took:.2f}s"
    return took


def test_file_rewrite_adds_a_route_under_load(sim, gateway_factory):
    gw = gateway_factory(config(OPENAI_ROUTE))
    assert anthropic_status(gw) == 404
    with openai_load(gw) as load:
        wait_until(lambda: load.ok >= 5, 10, what="load warming up")
        rewrite(gw, config(OPENAI_ROUTE, ANTHROPIC_ROUTE))
        wait_for_route(gw)
        before = load.ok
        wait_until(lambda: load.ok >= before + 5, 10, what="load continuing after the reload")
    assert load.failures == [], f"{len(load.failures)} request(s) failed during reload: {load.failures[:3]}"
    assert metric(gw, RELOADS, result="success") == 1
    assert metric(gw, RELOADS, result="failure") == 0
    assert "config reloaded" in gw.output()


def test_in_place_slow_write_never_serves_a_half_written_config(sim, gateway_factory):
    """A writer that truncates the file and fills it later (``cat > config.yaml`` over a slow
    pipe) leaves an empty file for a moment; the gateway must not reload that as a config
    with no listeners."""
    gw = gateway_factory(config(OPENAI_ROUTE))
    new = fill(config(OPENAI_ROUTE, ANTHROPIC_ROUTE), gw.placeholders)
    with openai_load(gw) as load:
        wait_until(lambda: load.ok >= 5, 10, what="load warming up")
        with open(gw.config_path, "w") as f:
            f.flush()
            time.sleep(1.5)  # three poll periods with an empty file
            f.write(new)
        wait_for_route(gw)
        before = load.ok
        wait_until(lambda: load.ok >= before + 5, 10, what="load continuing after the reload")
    assert load.failures == [], f"{len(load.failures)} request(s) failed: {load.failures[:3]}"
    assert gw.alive()


def test_sighup_reloads(sim, gateway_factory):
    gw = gateway_factory(config(OPENAI_ROUTE))
    # Same length, same inode, mtime restored: only SIGHUP can notice this edit.
    old = gw.config_path.read_text()
    st = os.stat(gw.config_path)
    new = old.replace("pathPrefix: /openai", "pathPrefix: /opena2")
    assert len(new) == len(old) and new != old
    with open(gw.config_path, "r+") as f:
        f.write(new)
    os.utime(gw.config_path, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.kill(gw.proc.pid, signal.SIGHUP)
    wait_until(lambda: requests.post(f"{gw.url}/opena2/v1/chat/completions", json=CHAT, timeout=5).status_code == 200,
               RELOAD_WITHIN, what="the renamed route after SIGHUP")
    assert requests.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, timeout=5).status_code == 404
    assert metric(gw, RELOADS, result="success") == 1
    assert "SIGHUP" in gw.output()
    assert gw.alive()


def configmap_layout(root: Path, text: str, version: str) -> None:
    """Kubernetes' projected ConfigMap: ``config.yaml -> ..data/config.yaml``,
    ``..data -> ..<version>``; an update writes a new version directory and renames a fresh
    ``..data`` symlink over the old one (atomic), then deletes the old directory."""
    vdir = root / f"..{version}"
    vdir.mkdir()
    (vdir / "config.yaml").write_text(text)
    tmp_link = root / "..data_tmp"
    os.symlink(vdir.name, tmp_link)
    old = os.readlink(root / "..data") if (root / "..data").is_symlink() else None
    os.rename(tmp_link, root / "..data")
    if not (root / "config.yaml").is_symlink():
        os.symlink("..data/config.yaml", root / "config.yaml")
    if old is not None:
        for f in (root / old).iterdir():
            f.unlink()
        (root / old).rmdir()


def test_configmap_symlink_swap_under_load(sim, gateway_factory, tmp_path):
    root = tmp_path / "configmap"
    root.mkdir()
    gw = start_gateway_at(gateway_factory, root / "config.yaml", config(OPENAI_ROUTE),
                          layout=lambda text: configmap_layout(root, text, "2026_11_22_01_00_00.1"))
    gateway_factory.wait_ready(gw)
    assert anthropic_status(gw) == 404
    with openai_load(gw) as load:
        wait_until(lambda: load.ok >= 5, 10, what="load warming up")
        configmap_layout(root, fill(config(OPENAI_ROUTE, ANTHROPIC_ROUTE), gw.placeholders), "2026_11_22_01_05_00.2")
        wait_for_route(gw, 200)
        # A second update (the route removed again) is seen too: the watcher follows the link
        # on every poll rather than holding the first target open.
        configmap_layout(root, fill(config(OPENAI_ROUTE), gw.placeholders), "2026_11_22_01_10_00.3")
        wait_for_route(gw, 404)
        before = load.ok
        wait_until(lambda: load.ok >= before + 5, 10, what="load continuing after the swaps")
    assert load.failures == [], f"{len(load.failures)} request(s) failed: {load.failures[:3]}"
    assert metric(gw, RELOADS, result="success") == 2


BAD_CONFIGS = {
    "bad_yaml": ("binds: [\n  - port: {port}\n    listeners: [", "invalid YAML"),
    "unknown_field": (config(OPENAI_ROUTE, ANTHROPIC_ROUTE, extra="  bogusReloadField: true\n"), "bogusReloadField"),
    "bad_duration": (config(OPENAI_ROUTE, ANTHROPIC_ROUTE, extra="  connectionTerminationDeadline: soon\n"),
                     "connectionTerminationDeadline"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_invalid_reload_keeps_the_last_good_config(sim, gateway_factory, case):
    text, expected_in_log = BAD_CONFIGS[case]
    gw = gateway_factory(config(OPENAI_ROUTE))
    with openai_load(gw) as load:
        wait_until(lambda: load.ok >= 5, 10, what="load warming up")
        rewrite(gw, text)
        wait_until(lambda: metric(gw, RELOADS, result="failure") >= 1, RELOAD_WITHIN,
                   what="the failed reload to be counted")
        before = load.ok
        wait_until(lambda: load.ok >= before + 5, 10, what="load continuing after the rejected reload")
    assert load.failures == [], f"{len(load.failures)} request(s) failed: {load.failures[:3]}"
    assert metric(gw, RELOADS, result="failure") == 1, "one bad file is one failed reload"
    assert metric(gw, RELOADS, result="success") == 0
    assert anthropic_status(gw) == 404, "nothing of the rejected config may be applied"
    assert ready_status(gw) == 200
    out = gw.output()
    assert "keeping the last good config" in out
    assert expected_in_log in out, f"the log should say what is wrong ({expected_in_log!r})"
    # Fixing the file recovers.
    rewrite(gw, config(OPENAI_ROUTE, ANTHROPIC_ROUTE))
    wait_for_route(gw)
    assert metric(gw, RELOADS, result="success") == 1


def test_reload_to_a_busy_port_keeps_the_old_listener(sim, gateway_factory):
    """Moving a bind to a port another process holds must fail as a whole: the old port keeps
    serving (the rejected config is not half-applied)."""
    gw = gateway_factory(config(OPENAI_ROUTE))
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        moved = config(OPENAI_ROUTE).replace("- port: {port}", f"- port: {busy.getsockname()[1]}")
        with openai_load(gw) as load:
            wait_until(lambda: load.ok >= 5, 10, what="load warming up")
            rewrite(gw, moved)
            wait_until(lambda: metric(gw, RELOADS, result="failure") >= 1, RELOAD_WITHIN,
                       what="the failed reload to be counted")
            before = load.ok
            wait_until(lambda: load.ok >= before + 5, 5, what="load continuing on the old port")
        assert load.failures == [], f"{len(load.failures)} request(s) failed: {load.failures[:3]}"
        assert "keeping the last good config" in gw.output()
    finally:
        busy.close()


def make_cert(dir: Path, name: str) -> tuple[Path, Path]:
    cert, key = dir / f"{name}.crt", dir / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def served_cn(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as s:
            der = s.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem, capture_output=True, text=True, check=True)
    return out.stdout.strip().rsplit("=", 1)[-1].strip()


def test_reload_rotates_the_listener_certificate(sim, gateway_factory, tmp_path):
    """Certificate rotation: new cert files plus a reload (SIGHUP, or any config edit) must be
    served to new connections, without a restart."""
    live_cert, live_key = tmp_path / "tls.crt", tmp_path / "tls.key"
    one = make_cert(tmp_path, "gw-one")
    two = make_cert(tmp_path, "gw-two")
    shutil.copy(one[0], live_cert)
    shutil.copy(one[1], live_key)
    tls = f"""
binds:
- port: {{port}}
  listeners:
  - name: tls
    protocol: HTTPS
    tls: {{cert: "{live_cert}", key: "{live_key}"}}
    routes:
""" + OPENAI_ROUTE
    gw = gateway_factory(HEAD + tls)
    assert served_cn(gw.port) == "gw-one"
    shutil.copy(two[0], live_cert)
    shutil.copy(two[1], live_key)
    os.kill(gw.proc.pid, signal.SIGHUP)
    wait_until(lambda: served_cn(gw.port) == "gw-two", RELOAD_WITHIN, interval=0.1, what="the new certificate")
    r = requests.post(f"https://127.0.0.1:{gw.port}/openai/v1/chat/completions", json=CHAT, timeout=5, verify=str(two[0]))
    assert r.status_code == 200


def test_reload_applies_listener_limits(sim, gateway_factory):
    gw = gateway_factory(config(OPENAI_ROUTE))
    many = {f"x-filler-{i}": str(i) for i in range(30)}
    assert requests.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, headers=many, timeout=5).status_code == 200
    rewrite(gw, config(OPENAI_ROUTE, extra="  limits:\n    maxHeaders: 20\n    maxRequestBodyBytes: 1000\n"))
    wait_until(lambda: metric(gw, RELOADS, result="success") == 1, RELOAD_WITHIN, what="the reload")

    def rejected() -> bool:
        try:
            return requests.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, headers=many,
                                 timeout=5).status_code == 431
        except requests.ConnectionError:
            return True
    assert rejected(), "maxHeaders from the reloaded config must apply to new connections"
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]}
    assert requests.post(f"{gw.url}/openai/v1/chat/completions", json=big, timeout=5).status_code == 413


def test_an_open_stream_survives_a_reload_that_removes_its_route(sim, gateway_factory):
    """A request keeps the config it started with: removing its route mid-stream neither cuts
    nor changes the stream; the next request sees the new config."""
    gw = gateway_factory(config(OPENAI_ROUTE, ANTHROPIC_ROUTE))
    oa = openai.OpenAI(base_url=f"{gw.url}/openai/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)
    stream = oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": words(6)}],
                                        stream=True, extra_headers={"x-sim-chunk-delay-ms": "150"})
    chunks = iter(stream)
    next(chunks)
    rewrite(gw, config(ANTHROPIC_ROUTE))
    wait_until(lambda: metric(gw, RELOADS, result="success") == 1, RELOAD_WITHIN, what="the reload")
    assert requests.post(f"{gw.url}/openai/v1/chat/completions", json=CHAT, timeout=5).status_code == 404
    text, finish = "", None
    for chunk in chunks:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert text == f"Hello from the simulator. You said: {words(6)}"
    assert finish == "stop"
