"""A guardrail webhook (agentgateway's protocol) and an OpenAI-style moderation endpoint, for
the prompt-guard tests. One threaded stdlib HTTP server on loopback; it records every call.

Webhook (``POST /request`` with ``{"body": {"messages": [...]}}``, ``POST /response`` with
``{"body": {"choices": [{"message": ...}]}}``), decided by the text it is sent:
- ``BLOCKME`` anywhere: reject, ``{"action": {"body": "blocked by policy", "status_code": 422}}``;
- ``maskme`` anywhere: mask, every ``maskme`` replaced by ``[x]`` (same list, same order);
- ``SLOWME``: answers after 3 s (past the gateway's webhook timeout in the tests);
- otherwise pass, ``{"action": {}}``.

Moderation (``POST /v1/moderations``, ``{"model", "input": [...]}``): flagged (category
``violence``) when an input mentions ``violent``; requires ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class GuardServer:
    def __init__(self, moderation_key: str = "sk-moderation-key") -> None:
        self.calls: list[dict] = []
        self.moderation_key = moderation_key
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (stdlib name)
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = None
                with server._lock:
                    server.calls.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                         "body": body})
                status, answer = server.answer(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer(self, path: str, headers: dict, body) -> tuple[int, dict]:
        """``headers`` has lower-case names."""
        if path == "/v1/moderations":
            if headers.get("authorization") != f"Bearer {self.moderation_key}":
                return 401, {"error": {"message": "bad key"}}
            inputs = body.get("input", []) if isinstance(body, dict) else []
            inputs = [inputs] if isinstance(inputs, str) else inputs
            results = [{"flagged": "violent" in t, "categories": {"violence": "violent" in t, "hate": False}}
                       for t in inputs]
            return 200, {"id": "modr-1", "model": body.get("model"), "results": results}
        key = "messages" if path.endswith("/request") else "choices"
        items = (body or {}).get("body", {}).get(key, [])
        texts = [i["content"] if key == "messages" else i["message"]["content"] for i in items]
        joined = " ".join(texts)
        if "SLOWME" in joined:
            time.sleep(3)
            return 200, {"action": {}}
        if "BLOCKME" in joined:
            return 200, {"action": {"body": "blocked by policy", "status_code": 422, "reason": "test"}}
        if "maskme" in joined:
            if key == "messages":
                masked = [dict(i, content=i["content"].replace("maskme", "[x]")) for i in items]
            else:
                masked = [{"message": dict(i["message"], content=i["message"]["content"].replace("maskme", "[x]"))}
                          for i in items]
            return 200, {"action": {"body": {key: masked}, "reason": "masked"}}
        return 200, {"action": {}}

    def calls_to(self, path: str) -> list[dict]:
        with self._lock:
            return [c for c in self.calls if c["path"] == path]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
