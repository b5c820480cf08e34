"""A scripted OpenAI-compatible HTTP server on 127.0.0.1, for testing the API judges without a network.

    with FakeOpenAIServer(lambda req: Reply(body=chat_reply("Yes"))) as server:
        judge = ChatHarmBenchJudge("gpt-test", OpenAIClient(base_url=server.url, api_key_env=None))

The script is a function of the request (`Request`: index in arrival order, path, JSON body, headers)
returning a `Reply` (status, body — a dict sent as JSON or a raw string —, a delay before answering,
extra headers). The server records every request and the largest number handled at once.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Request:
    index: int
    path: str
    body: dict
    headers: dict


@dataclass
class Reply:
    body: dict | str = field(default_factory=dict)
    status: int = 200
    delay: float = 0.0
    headers: dict = field(default_factory=dict)


def chat_reply(text: str) -> dict:
    "The JSON of a chat completion whose first choice says `text`."
    return {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                      "finish_reason": "stop"}]}


def moderation_reply(scores: list[dict]) -> dict:
    "The JSON of a moderation reply with one result per category-score dict."
    return {"id": "modr-test", "results": [{"flagged": max(s.values()) > 0.5, "category_scores": s} for s in scores]}


class FakeOpenAIServer:
    "Serve `script(request) -> Reply` on an ephemeral 127.0.0.1 port in a background thread (a context manager)."

    def __init__(self, script: Callable[[Request], Reply]):
        self.script, self.requests, self.max_in_flight = script, [], 0
        self._lock, self._in_flight = threading.Lock(), 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server._lock:
                    req = Request(len(server.requests), self.path, json.loads(raw or b"{}"), dict(self.headers))
                    server.requests.append(req)
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                counted = True
                try:
                    reply = server.script(req)
                    time.sleep(reply.delay)
                    data = (reply.body if isinstance(reply.body, str) else json.dumps(reply.body)).encode()
                    # in flight until its reply is ready: once the client has it, it may send its next request before this
                    # thread would otherwise get to count it done (max_in_flight then over-counted under load)
                    with server._lock: server._in_flight -= 1
                    counted = False
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items(): self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError): pass   # the client gave up (a timeout test)
                finally:
                    if counted:
                        with server._lock: server._in_flight -= 1

            def log_message(self, *args): pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str: return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
