"""A small OpenAI-compatible completions server around a PaddleNLP causal LM, for the demo and the tests.

`POST /v1/completions` takes `prompt`, `max_tokens`, `stream`, `temperature`
(0 or absent: decoding is greedy), `ignore_eos` and `stream_options`.
Streaming replies are server-sent events in chunked transfer coding, ending
with a usage chunk (when `stream_options.include_usage` is true) and
`data: [DONE]`. `GET /v1/models` lists the one model and `GET /health`
returns 200.

Scheduling: one engine thread decodes greedily, by one of two schedulers.
`continuous` (the default) schedules per iteration: at each step it admits
the waiting requests up to `max_batch_size`, prefills them together in one
left-padded batch, decodes one token for every running request with a shared
key/value cache (`agent.inference.decoding`), and retires a request as soon
as it finishes.
`static` takes the first waiting request and every request that arrives
within `batch_wait_seconds`, up to `max_batch_size`, and decodes them as one
left-padded batch with PaddleNLP's `generate`. Requests that arrive during a
static batch wait for the next one. Both stream each token to its request
as it is produced.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agent.i18n import _
from agent.inference.decoding import RunningBatch

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
MAX_HELD_TOKENS = 3


class BadRequest(ValueError):
    """A request the server rejects with 400; `code` is the OpenAI-style error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


SCHEDULERS = ("continuous", "static")


@dataclass
class Completion:
    """One request in the engine: its prompt ids, limits, and the queue its tokens stream into."""

    prompt_ids: list[int]
    max_tokens: int
    ignore_eos: bool
    events: queue.Queue = field(default_factory=queue.Queue)
    generated: list[int] = field(default_factory=list)
    sent_text: str = ""
    held: int = 0
    done: bool = False
    cancelled: bool = False  # set by the HTTP handler when the client has gone away


class TokenStream:
    """The conversion of each request's generated tokens into streamed text deltas and its end event."""

    def __init__(self, tokenizer, eos_token_id: int):
        self.tokenizer = tokenizer
        self.eos_token_id = eos_token_id

    def deliver(self, completion: Completion, token: int) -> None:
        """Append one generated token to `completion`, stream its text, and end the request at EOS or `max_tokens`."""
        if completion.done:
            return
        if token == self.eos_token_id and not completion.ignore_eos:
            self.finish(completion, "stop")
            return
        completion.generated.append(int(token))
        self._send_delta(completion)
        if len(completion.generated) >= completion.max_tokens:
            self.finish(completion, "length")

    def finish(self, completion: Completion, reason: str) -> None:
        text = self.tokenizer.decode(completion.generated, skip_special_tokens=True)
        if text.startswith(completion.sent_text) and len(text) > len(completion.sent_text):
            completion.events.put(("text", text[len(completion.sent_text):]))
            completion.sent_text = text
        completion.done = True
        completion.events.put(("end", reason))

    @staticmethod
    def fail(completion: Completion, error: Exception) -> None:
        if not completion.done:
            completion.done = True
            completion.events.put(("error", f"generation failed: {type(error).__name__}: {error}"))

    def _send_delta(self, completion: Completion) -> None:
        # A token may hold part of a UTF-8 character (SentencePiece byte
        # fallback): text ending in U+FFFD is held back for up to
        # MAX_HELD_TOKENS tokens, the most a character can still need.
        text = self.tokenizer.decode(completion.generated, skip_special_tokens=True)
        if text.endswith("\ufffd") and completion.held < MAX_HELD_TOKENS:
            completion.held += 1
            return
        completion.held = 0
        delta = text[len(completion.sent_text):]
        completion.sent_text = text
        if delta:
            completion.events.put(("text", delta))


class BatchStreamer:
    """PaddleNLP streamer for a static batch: receives each step's next token for the whole batch."""

    def __init__(self, batch: list[Completion], stream: TokenStream):
        self.batch = batch
        self.stream = stream

    def put(self, value) -> None:
        for completion, token in zip(self.batch, value.numpy().reshape(-1).tolist()):
            self.stream.deliver(completion, token)

    def end(self) -> None:
        for completion in self.batch:
            if not completion.done:
                self.stream.finish(completion, "length")


class BatchingEngine:
    """Run greedy generation for the waiting requests on one thread, with the `continuous` or `static` scheduler."""

    def __init__(self, model, tokenizer, model_name: str, max_batch_size: int = 16, batch_wait_seconds: float = 0.005,
                 max_prompt_tokens: int = 256, max_new_tokens: int = 256, scheduler: str = "continuous"):
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler {scheduler!r} is not known: use one of {', '.join(SCHEDULERS)}")
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be a positive integer, got {max_batch_size!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_batch_size = max_batch_size
        self.batch_wait_seconds = batch_wait_seconds
        self.max_prompt_tokens = max_prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.scheduler = scheduler
        self.stream = TokenStream(tokenizer, tokenizer.eos_token_id)
        self.pending: queue.Queue[Completion | None] = queue.Queue()
        self.batches = 0  # static batches, or continuous decode steps
        self.largest_batch = 0  # most requests decoded in one batch or step
        self.prefills = 0  # continuous only: batched prefill passes
        self.largest_prefill = 0  # continuous only: most requests prefilled in one pass
        self.thread = threading.Thread(target=self._loop, name="inference-engine", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def warm_up(self) -> None:
        """Decode one short prompt before serving, so the first measured request does not pay for first-call set-up."""
        completion = Completion([self.tokenizer.bos_token_id], 2, ignore_eos=True)
        if self.scheduler == "static":
            self._run_batch([completion])
            return
        batch = RunningBatch(self.model, self._pad_token_id())
        self._admit(batch, [completion])
        while len(batch):
            self._decode_step(batch)

    def stop(self) -> None:
        self.pending.put(None)
        self.thread.join(timeout=30)

    def submit(self, prompt: str, max_tokens: int, ignore_eos: bool) -> Completion:
        ids = [self.tokenizer.bos_token_id, *self.tokenizer.encode(prompt)][-self.max_prompt_tokens:]
        completion = Completion(ids, max_tokens, ignore_eos)
        self.pending.put(completion)
        return completion

    def _loop(self) -> None:
        if self.scheduler == "static":
            self._static_loop()
        else:
            self._continuous_loop()

    # Continuous batching -----------------------------------------------------

    def _continuous_loop(self) -> None:
        batch = RunningBatch(self.model, self._pad_token_id())
        while True:
            # Admit the waiting requests: block only when nothing is running.
            arrived: list[Completion] = []
            while len(batch) + len(arrived) < self.max_batch_size:
                try:
                    item = self.pending.get(block=not (len(batch) or arrived))
                except queue.Empty:
                    break
                if item is None:
                    self._abandon(batch, arrived)
                    return
                arrived.append(item)
            if arrived:
                self._admit(batch, arrived)

            # Decode one token for every running request, then retire the finished ones.
            if len(batch):
                self._decode_step(batch)

    def _admit(self, batch: RunningBatch, arrived: list[Completion]) -> None:
        """Prefill the arrived requests together and stream their first tokens. Each joins the batch unless that token ended it."""
        self.prefills += 1
        self.largest_prefill = max(self.largest_prefill, len(arrived))
        try:
            prefilled = batch.prefill([completion.prompt_ids for completion in arrived])
            for completion, token in zip(arrived, prefilled.tokens):
                self.stream.deliver(completion, token)
            keep = [not completion.done for completion in arrived]
            joining = prefilled.select(keep)
            if joining is not None:
                batch.add([completion for completion, kept in zip(arrived, keep) if kept], joining)
        except Exception as error:
            logger.exception(_("admitting {count} requests of {tokens} prompt tokens failed").format(
                count=len(arrived), tokens=", ".join(str(len(completion.prompt_ids)) for completion in arrived)))
            for completion in arrived:
                self.stream.fail(completion, error)

    def _pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return 0 if pad is None else int(pad)

    def _decode_step(self, batch: RunningBatch) -> None:
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        try:
            tokens = batch.step()
            for completion, token in zip(batch.owners, tokens):
                self.stream.deliver(completion, token)
            batch.remove([not (completion.done or completion.cancelled) for completion in batch.owners])
        except Exception as error:
            logger.exception(_("decoding failed for a batch of {count} requests").format(count=len(batch)))
            for completion in batch.owners:
                self.stream.fail(completion, error)
            batch.clear()

    def _abandon(self, batch: RunningBatch, arrived: list[Completion]) -> None:
        for completion in [*batch.owners, *arrived]:
            self.stream.fail(completion, RuntimeError("the server is stopping"))
        batch.clear()

    # Static batching -----------------------------------------------------------

    def _static_loop(self) -> None:
        while True:
            first = self.pending.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.batch_wait_seconds
            while len(batch) < self.max_batch_size:
                try:
                    item = self.pending.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self.pending.put(None)
                    break
                batch.append(item)
            self._run_batch(batch)

    def _run_batch(self, batch: list[Completion]) -> None:
        import paddle

        width = max(len(item.prompt_ids) for item in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = [[pad] * (width - len(item.prompt_ids)) + item.prompt_ids for item in batch]
        mask = [[0] * (width - len(item.prompt_ids)) + [1] * len(item.prompt_ids) for item in batch]
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        try:
            with paddle.no_grad():
                self.model.generate(
                    input_ids=paddle.to_tensor(input_ids, dtype="int64"),
                    attention_mask=paddle.to_tensor(mask, dtype="int64"),
                    max_new_tokens=max(item.max_tokens for item in batch), decode_strategy="greedy_search",
                    eos_token_id=None, pad_token_id=pad, bos_token_id=self.tokenizer.bos_token_id,
                    use_cache=True, streamer=BatchStreamer(batch, self.stream),
                )
        except Exception as error:
            logger.exception(_("generation failed for a batch of {count} requests").format(count=len(batch)))
            for item in batch:
                self.stream.fail(item, error)


def parse_request(body: bytes, engine: BatchingEngine) -> dict[str, Any]:
    """Validate a completions request body; raise BadRequest naming the field and the accepted values."""
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("invalid_json", "the request body is not valid JSON")
    if not isinstance(request, dict):
        raise BadRequest("invalid_request", "the request body must be a JSON object")
    prompt = request.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("invalid_prompt", "'prompt' must be a string (or a list of exactly one string)")
    max_tokens = request.get("max_tokens", 16)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= engine.max_new_tokens:
        raise BadRequest("invalid_max_tokens", f"'max_tokens' must be an integer from 1 to {engine.max_new_tokens}, got {max_tokens!r}")
    temperature = request.get("temperature", 0)
    if temperature not in (0, 0.0, None):
        raise BadRequest("unsupported_temperature", f"only greedy decoding is served: 'temperature' must be 0, got {temperature!r}")
    options = request.get("stream_options") or {}
    return {"prompt": prompt, "max_tokens": max_tokens, "stream": bool(request.get("stream", False)),
            "ignore_eos": bool(request.get("ignore_eos", False)),
            "include_usage": bool(options.get("include_usage", False)) if isinstance(options, dict) else False}


class CompletionsHandler(BaseHTTPRequestHandler):
    """HTTP handler; `server.engine` is the BatchingEngine."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json(HTTPStatus.OK, {"status": "ok"})
        elif self.path == "/v1/models":
            self._json(HTTPStatus.OK, {"object": "list", "data": [{"id": self.server.engine.model_name, "object": "model"}]})
        else:
            self._error(HTTPStatus.NOT_FOUND, "not_found", f"no route {self.path}: use POST /v1/completions")

    def do_POST(self) -> None:
        if self.path != "/v1/completions":
            self._error(HTTPStatus.NOT_FOUND, "not_found", f"no route {self.path}: use POST /v1/completions")
            return
        length_header = self.headers.get("Content-Length") or "0"
        length = int(length_header) if length_header.isdigit() else -1
        if not 0 < length <= MAX_BODY_BYTES:
            self._error(HTTPStatus.BAD_REQUEST, "invalid_length", f"Content-Length must be 1 to {MAX_BODY_BYTES} bytes, got {length_header!r}")
            return
        try:
            request = parse_request(self.rfile.read(length), self.server.engine)
        except BadRequest as error:
            self._error(HTTPStatus.BAD_REQUEST, error.code, str(error))
            return
        completion = self.server.engine.submit(request["prompt"], request["max_tokens"], request["ignore_eos"])
        try:
            if request["stream"]:
                self._stream(completion, request)
            else:
                self._whole(completion)
        except (BrokenPipeError, ConnectionResetError) as error:
            # The client went away (a load-generator trial that stopped early, for example).
            logger.debug("client %s disconnected: %s", self.address_string(), error)
            completion.cancelled = True
            self.close_connection = True

    def _stream(self, completion: Completion, request: dict[str, Any]) -> None:
        identity = f"cmpl-{uuid.uuid4().hex[:16]}"
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        while True:
            kind, value = completion.events.get()
            if kind == "text":
                self._event(self._chunk(identity, value, None))
            elif kind == "end":
                self._event(self._chunk(identity, "", value))
                break
            else:
                self._event({"error": {"message": value, "type": "server_error", "code": "generation_failed"}})
                break
        if request["include_usage"]:
            self._event({"id": identity, "object": "text_completion", "model": self.server.engine.model_name, "choices": [],
                         "usage": _usage(completion)})
        self._frame(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _whole(self, completion: Completion) -> None:
        text, reason = "", None
        while reason is None:
            kind, value = completion.events.get()
            if kind == "text":
                text += value
            elif kind == "end":
                reason = value
            else:
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "generation_failed", value)
                return
        self._json(HTTPStatus.OK, {"id": f"cmpl-{uuid.uuid4().hex[:16]}", "object": "text_completion",
                                   "model": self.server.engine.model_name,
                                   "choices": [{"index": 0, "text": text, "finish_reason": reason}], "usage": _usage(completion)})

    def _chunk(self, identity: str, text: str, reason: str | None) -> dict[str, Any]:
        return {"id": identity, "object": "text_completion", "created": int(time.time()), "model": self.server.engine.model_name,
                "choices": [{"index": 0, "text": text, "finish_reason": reason}]}

    def _event(self, event: dict[str, Any]) -> None:
        self._frame(b"data: " + json.dumps(event, ensure_ascii=False).encode("utf-8") + b"\n\n")

    def _frame(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, code: str, message: str) -> None:
        # `message` is the English text of the API response, which OpenAI-compatible clients read.
        logger.warning(_("{method} {path} from {client}: {status} {code}: {message}").format(
            method=self.command, path=self.path, client=self.address_string(), status=int(status), code=code, message=message))
        self._json(status, {"error": {"message": message, "type": "invalid_request_error", "code": code}})


def _usage(completion: Completion) -> dict[str, int]:
    tokens = len(completion.generated)
    return {"prompt_tokens": len(completion.prompt_ids), "completion_tokens": tokens,
            "total_tokens": len(completion.prompt_ids) + tokens}


class CompletionsServer(ThreadingHTTPServer):
    """The HTTP server with its engine; `url` is the completions endpoint."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, engine: BatchingEngine, host: str = "127.0.0.1", port: int = 0):
        super().__init__((host, port), CompletionsHandler)
        self.engine = engine
        self.thread = threading.Thread(target=self.serve_forever, name="completions-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1/completions"

    def __enter__(self) -> CompletionsServer:
        self.engine.start()
        self.thread.start()
        logger.info(_("serving {model} at {url} ({scheduler} batching of up to {size} requests, static wait {wait:.1f} ms)").format(
            model=self.engine.model_name, url=self.url, scheduler=self.engine.scheduler, size=self.engine.max_batch_size,
            wait=1e3 * self.engine.batch_wait_seconds))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()
        self.server_close()
        self.engine.stop()
        engine = self.engine
        if engine.scheduler == "static":
            logger.info(_("stopped the server at {url} after {batches} batches, at most {largest} requests in one").format(
                url=self.url, batches=engine.batches, largest=engine.largest_batch))
        else:
            logger.info(_("stopped the server at {url} after {steps} decode steps of at most {largest} requests and {prefills} prefills "
                          "of at most {largest_prefill}").format(url=self.url, steps=engine.batches, largest=engine.largest_batch,
                                                                   prefills=engine.prefills, largest_prefill=engine.largest_prefill))
