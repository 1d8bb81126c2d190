"""A scripted OpenAI-compatible `/v1/chat/completions` server over real HTTP, for judge tests.

Queued actions (`server.script`) are served first, one per request, then the action
`fault(prompt)` picks (if set and not None), else `respond(prompt)`:
  ("status", code)      reply with that HTTP error
  ("sleep", seconds)    stall (a client timeout), then answer normally
  ("drop",)             close the connection without a reply
  ("malformed",)        HTTP 200 with a body that is not JSON
  ("bad_logprobs",)     HTTP 200 whose top_logprobs hold no numbers
  ("empty_logprobs",)   HTTP 200 with an empty logprobs list
`respond(prompt)` returns {token: probability} for the first token, or a str for full text.
Every request's body, headers and arrival time are recorded (`requests`, `headers`, `times`).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Respond = Callable[[str], "dict[str, float] | str"]


class FakeServer:
    def __init__(self, respond: Respond):
        self.respond = respond
        self.script: list[tuple] = []
        self.fault: Callable[[str], tuple | None] | None = None  # per-prompt action once the script is done
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.times: list[float] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    server.times.append(time.monotonic())
                    action = server.script.pop(0) if server.script else None
                if action is None and server.fault is not None:
                    action = server.fault(body["messages"][-1]["content"])
                kind = action[0] if action else None
                if kind == "status":
                    return self._send(action[1], {"error": {"message": "scripted", "type": "x", "code": None}})
                if kind == "drop":
                    self.close_connection = True
                    return
                if kind == "malformed":
                    return self._send(200, b'{"id": "c", "choices": [ {"index": 0, "mess')
                if kind == "sleep":
                    time.sleep(action[1])
                completion = server.completion(body)
                if kind == "bad_logprobs":
                    for entry in completion["choices"][0]["logprobs"]["content"][0]["top_logprobs"]:
                        entry["logprob"] = "not a number"
                if kind == "empty_logprobs":
                    completion["choices"][0]["logprobs"]["content"] = []
                self._send(200, completion)

            def _send(self, code: int, payload: Any) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def completion(self, body: dict) -> dict:
        out = self.respond(body["messages"][-1]["content"])
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        if isinstance(out, str):
            choice.update(message={"role": "assistant", "content": out}, logprobs=None)
        else:
            top = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in out.items()]
            first = top[0]["token"]
            choice.update(
                message={"role": "assistant", "content": first},
                logprobs={"content": [{**top[0], "top_logprobs": top}], "refusal": None},
            )
        return {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"], "choices": [choice]}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
