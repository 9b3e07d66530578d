"""The node's OpenAI-compatible API: an application changes one base URL and its
prompts never leave the tenant's network."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Stream

from node_runtime.bodies import validate
from node_runtime.errors import BadRequest, NodeError, Unauthorized
from node_runtime.forward import FORWARDED
from node_runtime.metrics import CONTENT_TYPE, count_model
from node_runtime.peer_blobs import peer_blob
from node_runtime.responses import events as response_events
from node_runtime.responses import from_chat, to_chat
from wire.contract import PEER_BLOBS

if TYPE_CHECKING:
    from node_runtime.runtime import NodeRuntime

log = logging.getLogger("hangar.node.api")


def _error(
    status: int,
    message: str,
    *,
    type_: str,
    code: str,
    headers: dict | None = None,
    param: str | None = None,
) -> Response:
    body = {"error": {"message": message, "type": type_, "code": code, "param": param}}
    return Response(body, status_code=status, headers=headers or {}, media_type=MediaType.JSON)


def node_error(_: Request, exc: NodeError) -> Response:
    return _error(
        exc.status,
        exc.message,
        type_=exc.type,
        code=exc.code,
        headers=exc.headers,
        param=exc.param,
    )


def http_error(_: Request, exc: HTTPException) -> Response:
    return _error(
        exc.status_code, str(exc.detail), type_="invalid_request_error", code=str(exc.status_code)
    )


def unexpected(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return _error(
        500, f"internal error: {type(exc).__name__}: {exc}", type_="server_error", code="internal"
    )


def _runtime(request: Request) -> NodeRuntime:
    return request.app.state.runtime


def api_key_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    expected = connection.app.state.runtime.settings.api_key.get_secret_value()
    # Peers fetching blobs carry a control-plane ticket instead (node_runtime.peer_blobs).
    if (
        not expected
        or connection.url.path == "/healthz"
        or connection.url.path.startswith(PEER_BLOBS)
    ):
        return
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise Unauthorized(
            "this node wants its API key: send 'Authorization: Bearer <HANGAR_NODE_API_KEY>'"
        )


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise BadRequest("the body must be a JSON object with a 'model' (see GET /v1/models)")
    return body


@get("/healthz")
async def healthz(request: Request) -> dict[str, Any]:
    rt = _runtime(request)
    return {
        "status": "ok",
        "control_plane": rt.agent.connected,
        "refused": rt.agent.refused,
        "queued_reports": len(rt.outbox),
    }


def _model_objects(rt: NodeRuntime) -> list[dict[str, Any]]:
    data = []
    for e in rt.syncer.entries.values():
        data.extend(
            {
                "id": served,
                "object": "model",
                "created": int(rt.started),
                "owned_by": "hangar",
                "hangar": {
                    "digest": e.desired.digest,
                    "state": e.status.state.value,
                    "loaded": rt.serving.loaded(e.desired.digest),
                    "estimated_memory_bytes": e.desired.estimated_memory_bytes,
                },
            }
            for served in e.ids
        )
    return data


@get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": _model_objects(_runtime(request))}


@get("/v1/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> dict[str, Any]:
    rt = _runtime(request)
    model_id = model_id.lstrip("/")
    found = next((m for m in _model_objects(rt) if m["id"] == model_id), None)
    if found is None:
        entry = rt.serving.lookup(model_id)  # a 404 listing what is here, or another name
        found = next(m for m in _model_objects(rt) if m["id"] in entry.ids) | {"id": model_id}
    return found


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request) -> Response:
    return await _serve(
        request,
        "/chat/completions",
        lambda m, body, mid, cancel: m.chat(body, model=mid, cancel=cancel),
    )


@post("/v1/completions", status_code=200)
async def completions(request: Request) -> Response:
    return await _serve(
        request,
        "/completions",
        lambda m, body, mid, cancel: m.complete(body, model=mid, cancel=cancel),
    )


@post("/v1/embeddings", status_code=200)
async def embeddings(request: Request) -> Response:
    return await _serve(
        request, "/embeddings", lambda m, body, mid, cancel: m.embed(body, model=mid)
    )


async def _serve(request: Request, path: str, run) -> Response:
    rt = _runtime(request)
    rt.counters.requests += 1
    forwarded_already = FORWARDED in request.headers
    entry = None
    label = "unknown"  # a model this node does not serve never becomes a metrics label
    started = time.perf_counter()
    try:
        body = validate(path, await _json(request))
        entry = rt.serving.lookup(body["model"])
        label = entry.id
        runner = await rt.serving.runner_for(entry)
        served = body["model"] if body["model"] in entry.ids else entry.id
        first, rest = await runner.stream(lambda m, cancel: run(m, body, served, cancel))
    except NodeError as exc:
        if exc.status == 503 and not forwarded_already and entry is not None:
            fwd = await rt.forwarder.forward(
                path, body, name=entry.desired.name, digest=entry.desired.digest
            )
            if fwd is not None:
                rt.counters.forwarded += 1
                rt.metrics.outcome(label, path, fwd.status, forwarded=True)
                return Stream(fwd.body, status_code=fwd.status, headers=fwd.headers)
        rt.counters.rejected += exc.status == 503
        rt.counters.errors += exc.status != 503
        rt.metrics.outcome(label, path, exc.status)
        if entry is not None:
            count_model(rt.counters, entry.desired.digest, exc.status)
        raise
    digest = entry.desired.digest
    if not body.get("stream") or path == "/embeddings":
        _count(rt, first)
        rt.counters.completed += 1
        rt.metrics.outcome(label, path, 200)
        count_model(rt.counters, digest, 200)
        rt.metrics.usage(label, (first or {}).get("usage") or {}, time.perf_counter() - started)
        return Response(first, media_type=MediaType.JSON)
    rt.metrics.ttft.labels(label).observe(time.perf_counter() - started)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return Stream(
        _sse(
            rt, first, rest, include_usage, label=label, digest=digest, path=path, started=started
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _count(rt: NodeRuntime, out: dict | None) -> None:
    usage = (out or {}).get("usage") or {}
    rt.counters.prompt_tokens += usage.get("prompt_tokens", 0)
    rt.counters.completion_tokens += usage.get("completion_tokens", 0)


async def _sse(
    rt: NodeRuntime,
    first: dict | None,
    rest: AsyncIterator[dict],
    include_usage: bool,
    *,
    label: str,
    digest: str,
    path: str,
    started: float,
) -> AsyncIterator[bytes]:
    """The engine ends every stream with one chunk of usage and no choices: counted
    always, sent only when the client asked (stream_options.include_usage), once."""
    try:
        chunk = first
        while chunk is not None:
            is_usage = not chunk.get("choices") and chunk.get("usage")
            if is_usage:
                _count(rt, chunk)
                rt.metrics.usage(label, chunk["usage"], time.perf_counter() - started)
            if include_usage or not is_usage:
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            chunk = await anext(rest, None)
        yield b"data: [DONE]\n\n"
        rt.counters.completed += 1
        rt.metrics.outcome(label, path, 200)
        count_model(rt.counters, digest, 200)
    except Exception as exc:  # headers are sent: the error can only go in the stream
        rt.counters.errors += 1
        err = exc if isinstance(exc, NodeError) else NodeError(f"{type(exc).__name__}: {exc}")
        rt.metrics.outcome(label, path, err.status if isinstance(exc, NodeError) else 500)
        # A stream that broke half-way is the model's failure, whatever the error says.
        count_model(rt.counters, digest, max(err.status, 500))
        event = {"error": {"message": err.message, "type": err.type, "code": err.code}}
        yield b"data: " + json.dumps(event).encode() + b"\n\n"
    finally:
        await rest.aclose()


@post("/v1/responses", status_code=200)
async def responses(request: Request) -> Response:
    rt = _runtime(request)
    rt.counters.requests += 1
    label, path, started = "unknown", "/responses", time.perf_counter()
    entry = None
    try:
        raw = await _json(request)
        chat_body, conversation = to_chat(raw, rt.responses)
        body = validate("/chat/completions", chat_body)
        entry = rt.serving.lookup(body["model"])
        label = entry.id
        runner = await rt.serving.runner_for(entry)
        served = body["model"] if body["model"] in entry.ids else entry.id
        first, rest = await runner.stream(
            lambda m, cancel: m.chat(body, model=served, cancel=cancel)
        )
    except NodeError as exc:
        rt.counters.rejected += exc.status == 503
        rt.counters.errors += exc.status != 503
        rt.metrics.outcome(label, path, exc.status)
        if entry is not None:
            count_model(rt.counters, entry.desired.digest, exc.status)
        raise
    digest = entry.desired.digest
    if not body.get("stream"):
        _count(rt, first)
        rt.counters.completed += 1
        rt.metrics.outcome(label, path, 200)
        count_model(rt.counters, digest, 200)
        rt.metrics.usage(label, first.get("usage") or {}, time.perf_counter() - started)
        return Response(
            from_chat(raw, first, conversation, rt.responses), media_type=MediaType.JSON
        )

    async def sse() -> AsyncIterator[bytes]:
        try:
            async for event in response_events(
                raw, first, rest, conversation, rt.responses, served
            ):
                if event["type"] in ("response.completed", "response.incomplete"):
                    usage = event["response"]["usage"] or {}
                    tokens = {
                        "prompt_tokens": usage.get("input_tokens", 0),
                        "completion_tokens": usage.get("output_tokens", 0),
                    }
                    _count(rt, {"usage": tokens})
                    rt.metrics.usage(label, tokens, time.perf_counter() - started)
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
            rt.counters.completed += 1
            rt.metrics.outcome(label, path, 200)
            count_model(rt.counters, digest, 200)
        except Exception as exc:  # headers are sent: the error can only go in the stream
            rt.counters.errors += 1
            err = exc if isinstance(exc, NodeError) else NodeError(f"{type(exc).__name__}: {exc}")
            rt.metrics.outcome(label, path, err.status if isinstance(exc, NodeError) else 500)
            count_model(rt.counters, digest, max(err.status, 500))
            event = {"type": "error", "code": err.code, "message": err.message, "param": None}
            yield f"event: error\ndata: {json.dumps(event)}\n\n".encode()
        finally:
            await rest.aclose()

    return Stream(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@get("/metrics")
async def metrics(request: Request) -> Response:
    rt = _runtime(request)
    return Response(
        rt.metrics.render(rt.serving, rt.syncer), media_type=CONTENT_TYPE, status_code=200
    )


def create_node_app(runtime: NodeRuntime) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar):
        app.state.runtime = runtime
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    runtime.started = time.time()
    return Litestar(
        route_handlers=[
            healthz,
            metrics,
            list_models,
            get_model,
            chat_completions,
            completions,
            embeddings,
            responses,
            peer_blob,
        ],
        guards=[api_key_guard],
        exception_handlers={
            NodeError: node_error,
            HTTPException: http_error,
            Exception: unexpected,
        },
        lifespan=[lifespan],
        openapi_config=None,
        debug=False,
    )
