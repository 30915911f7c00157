"""A small streaming completions server for the load generator's tests, with switchable misbehaviour.

It speaks the same wire format as the agent's Paddle server (chunked
server-sent events) without a model: every reply streams a role-only chunk
and a keep-alive comment, waits `delay` seconds, then streams text chunks,
a usage chunk and data: [DONE]. `mode` makes it reply with an HTTP error,
a chunk that is not JSON, an error event, or a stream cut before [DONE].
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(request)
        mode, delay = self.server.mode, self.server.delay
        if mode == "http_error":
            body = b'{"error": {"message": "model overloaded", "code": "overloaded"}}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        self.frame(b": keep-alive\n\n")
        self.event({"choices": [{"index": 0, "text": ""}]})
        time.sleep(delay)
        if mode == "malformed":
            self.frame(b"data: {not json\n\n")
        elif mode == "error_event":
            self.event({"error": {"message": "out of memory", "code": "oom"}})
        for number in range(request.get("max_tokens", 4)):
            self.event({"choices": [{"index": 0, "text": f" w{number}"}]})
        self.event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": request.get("max_tokens", 4)}})
        if mode != "no_done":
            self.frame(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def event(self, value):
        self.frame(b"data: " + json.dumps(value).encode() + b"\n\n")

    def frame(self, data):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


class StreamingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str = "ok", delay: float = 0.02):
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode, self.delay, self.requests = mode, delay, []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/completions"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.shutdown()
        self.server_close()
