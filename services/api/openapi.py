"""The OpenAPI document as the API behaves, built in one place.

Litestar documents a 400 shaped ``{status_code, detail, extra}`` on every route; ours
are ``{error, detail, code}`` and come with other statuses too. ``document(app)`` walks
every operation once, after the routes are registered, and:

- replaces the error responses by the shared ones in ``components.responses``, chosen
  from what the route takes (parameters, a body, a credential, a path id) plus what its
  decorator declares with ``opt=doc(...)`` (402, 409, 416, ...);
- adds what Litestar cannot see in the handler's signature: binary and CSV bodies,
  request headers (``Upload-Offset``, ``Range``, ``Idempotency-Key``), response
  headers and media types.

The docs page (Swagger UI) is served with its JavaScript and CSS from this package, so
it renders on a network with no internet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.datastructures import CacheControlHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    Example,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.plugins import OpenAPISchemaPlugin
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router

from metering.meters import METERS

ASSETS = Path(__file__).parent / "static" / "swagger-ui"
# Not under /schema: Litestar answers any unknown /schema/NAME with its own 404 page.
ASSETS_PATH = "/openapi-assets"

# What each status means here, and the ``code`` a script matches on.
STATUSES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "The request is invalid; `error` says what and how to fix it."),
    401: ("unauthorized", "Missing or unknown credential (`Authorization: Bearer ...`)."),
    402: ("payment_required", "Refused by the plan: a limit, a spend cap or an ended trial."),
    403: ("forbidden", "The credential is valid but its scopes do not allow this."),
    404: ("not_found", "No such object in the caller's tenant."),
    409: (
        "conflict",
        "The request conflicts with the current state (or reuses an Idempotency-Key).",
    ),
    413: ("too_large", "The body is larger than this route accepts."),
    416: ("range_not_satisfiable", "The Range lies outside the file."),
    431: ("headers_too_large", "A request header (or all of them) is too large."),
    503: ("unavailable", "A dependency (Postgres, S3) is unreachable; retry after Retry-After."),
}

OPT_KEY = "openapi"


@dataclass(frozen=True)
class Doc:
    """What a route's signature does not tell the OpenAPI generator."""

    errors: tuple[int, ...] = ()
    body: dict[str, OpenAPIMediaType] | None = None
    body_required: bool = True
    headers: tuple[Parameter, ...] = ()
    responses: dict[str, OpenAPIResponse] = field(default_factory=dict)


def doc(*errors: int, **kwargs: Any) -> dict[str, Doc]:
    """For a route decorator's ``opt``: ``@post("/", opt=doc(402, 409))``."""
    return {OPT_KEY: Doc(errors=errors, **kwargs)}


def header(name: str, description: str, *, required: bool = False, **schema: Any) -> Parameter:
    return Parameter(
        name=name,
        param_in="header",
        required=required,
        description=description,
        schema=Schema(type=OpenAPIType.STRING, **schema),
    )


BINARY = {
    "application/octet-stream": OpenAPIMediaType(
        schema=Schema(type=OpenAPIType.STRING, format="binary")  # type: ignore[arg-type]
    )
}

IDEMPOTENCY_KEY = header(
    "Idempotency-Key",
    "Makes a retry safe: the same key with the same body gets the first answer again "
    "(for 24 hours); the same key with another body is a 409. Scoped to the caller.",
    max_length=255,
    pattern=r"^[\x21-\x7e]+$",
)


def _error_schema() -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["error", "detail", "code"],
        properties={
            "error": Schema(type=OpenAPIType.STRING, description="what went wrong, for people"),
            "detail": Schema(description="structured detail (field errors, limits) or null"),
            "code": Schema(type=OpenAPIType.STRING, description="stable, for scripts"),
        },
    )


def _error_response(status: int) -> OpenAPIResponse:
    code, description = STATUSES[status]
    example = {"error": HTTPStatus(status).phrase.lower(), "detail": None, "code": code}
    headers = None
    if status == 503:
        headers = {
            "Retry-After": OpenAPIHeader(
                schema=Schema(type=OpenAPIType.STRING), description="seconds to wait"
            )
        }
    return OpenAPIResponse(
        description=description,
        headers=headers,
        content={
            "application/json": OpenAPIMediaType(
                schema=Reference(ref="#/components/schemas/Error"),
                examples={code: Example(value=example)},
            )
        },
    )


def _name(status: int) -> str:
    return STATUSES[status][0]


class DecimalSchema(OpenAPISchemaPlugin):
    """Amounts and rates are Decimal: sent as JSON strings (exact), accepted as strings or
    numbers. Litestar documents a constrained Decimal as a number only."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return value is Decimal

    def to_openapi_schema(self, field_definition: Any, schema_creator: Any) -> Schema:
        schema = Schema(
            type=[OpenAPIType.NUMBER, OpenAPIType.STRING],
            pattern=r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$",
            description="a decimal number, sent as a string",
        )
        kwargs = field_definition.kwarg_definition
        if getattr(kwargs, "ge", None) is not None:
            schema.minimum = float(kwargs.ge)
        if getattr(kwargs, "le", None) is not None:
            schema.maximum = float(kwargs.le)
        return schema


PLUGINS = [DecimalSchema()]


def config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Hangar",
        version="0.1.0",
        description=(
            "Metered model registry and fleet control plane for private AI. Errors are "
            '`{"error", "detail", "code"}`. Lists take `limit` and `after` and send a '
            '`Link: <...>; rel="next"` header while there are more.'
        ),
        path="/schema",
        render_plugins=[
            SwaggerRenderPlugin(
                path="/swagger",  # and /schema itself, as the default page
                js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
                css_url=f"{ASSETS_PATH}/swagger-ui.css",
                standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
                favicon="",  # the default one comes from a CDN
            )
        ],
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
        ),
        security=[{"bearer": []}],
    )


def assets_router():
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[ASSETS],
        cache_control=CacheControlHeader(max_age=86400),
        include_in_schema=False,
    )


def _statuses(op: Operation, handler: Any, path: str, extra: Doc) -> set[int]:
    takes = set(handler.parsed_fn_signature.parameters)
    found = {431, *extra.errors}
    if op.parameters or op.request_body or extra.body or extra.headers:
        found.add(400)
    if "principal" in takes or "operator" in takes:
        found.add(401)
    if "principal" in takes:
        found.add(403)
    if "{" in path:
        found.add(404)
    if op.request_body or extra.body:
        found.add(413)
    if takes & {"db", "hangar", "principal", "operator"}:
        found.add(503)
    return found


def _document(op: Operation, handler: Any, path: str) -> None:
    extra: Doc = handler.opt.get(OPT_KEY) or Doc()
    if extra.body is not None:
        op.request_body = RequestBody(content=extra.body, required=extra.body_required)
    if extra.headers:
        op.parameters = [*(op.parameters or []), *extra.headers]
    responses = {k: v for k, v in (op.responses or {}).items() if int(k) < 400}
    responses.update(extra.responses)
    _link_header(op, responses)
    for status in sorted(_statuses(op, handler, path, extra)):
        # A route's own description of a status (``doc(responses=...)``) wins.
        responses.setdefault(str(status), Reference(ref=f"#/components/responses/{_name(status)}"))
    op.responses = responses  # type: ignore[assignment]


def _link_header(op: Operation, responses: dict[str, Any]) -> None:
    """Every list route pages the same way (services/api/paging.py): say so."""
    query = {p.name for p in op.parameters or [] if getattr(p, "param_in", None) == "query"}
    ok = responses.get("200")
    if {"after", "limit"} <= query and isinstance(ok, OpenAPIResponse):
        ok.headers = {
            **(ok.headers or {}),
            "Link": OpenAPIHeader(
                schema=Schema(type=OpenAPIType.STRING),
                description='`<URL>; rel="next"` while there are more items: GET it for '
                "the next page",
            ),
        }


def document(app: Litestar) -> None:
    """Rewrite the generated document once (the plugin caches it; routes are final)."""
    from litestar._openapi.plugin import OpenAPIPlugin

    spec = app.plugins.get(OpenAPIPlugin).provide_openapi()
    spec.components.schemas["Error"] = _error_schema()
    spec.components.responses = {_name(s): _error_response(s) for s in STATUSES}
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path_format not in (spec.paths or {}):
            continue
        item = spec.paths[route.path_format]
        for method, (handler, _) in route.route_handler_map.items():
            op = getattr(item, method.lower(), None)
            if isinstance(op, Operation):
                _document(op, handler, route.path_format)


# Shared pieces the controllers' decorators name.

UPLOAD_OFFSET = header(
    "Upload-Offset",
    "The byte offset this body starts at (GET the upload to learn how many are committed).",
    required=True,
    pattern=r"^[0-9]{1,19}$",
)
RANGE = header(
    "Range",
    "One byte range (`bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX`); answered with 206.",
    pattern=r"^bytes=[0-9]*-[0-9]*$",
)
IF_RANGE = header("If-Range", "The ETag of the copy already held: resume only if unchanged.")


def _string_header(description: str) -> OpenAPIHeader:
    return OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING), description=description)


def blob_responses() -> dict[str, OpenAPIResponse]:
    headers = {
        "ETag": _string_header("the blob's digest, quoted"),
        "X-Hangar-Digest": _string_header("sha256:<hex> of the whole file"),
        "Accept-Ranges": _string_header("bytes"),
        "Content-Length": _string_header("bytes in this response"),
    }
    partial = {**headers, "Content-Range": _string_header("bytes START-END/SIZE")}
    return {
        "200": OpenAPIResponse(description="The whole file.", headers=headers, content=BINARY),
        "206": OpenAPIResponse(description="The requested range.", headers=partial, content=BINARY),
    }


def export_responses() -> dict[str, OpenAPIResponse]:
    return {
        "200": OpenAPIResponse(
            description="An attachment: CSV with a header row (`format=csv`) or a JSON list.",
            headers={"Content-Disposition": _string_header('attachment; filename="..."')},
            content={
                "text/csv; charset=utf-8": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING)),
                "application/json": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT))
                ),
            },
        )
    }


_UUID = Schema(type=OpenAPIType.STRING, format="uuid")  # type: ignore[arg-type]
USAGE_EVENT = Schema(
    type=OpenAPIType.OBJECT,
    required=["tenant_id", "id", "meter", "quantity", "occurred_at"],
    additional_properties=False,
    properties={
        "tenant_id": _UUID,
        "id": Schema(
            type=OpenAPIType.STRING,
            min_length=1,
            max_length=128,
            description="the idempotency key of the event within its tenant",
        ),
        "meter": Schema(
            type=OpenAPIType.STRING,
            enum=list(METERS),
            description="units: device_day in device-days, storage_sample in bytes held at an "
            "hourly sample, egress and peer_transfer in bytes sent, inference in requests",
        ),
        "quantity": Schema(
            type=OpenAPIType.INTEGER,
            minimum=0,
            maximum=2**63 - 1,
            description="in the meter's unit",
        ),
        "occurred_at": Schema(
            type=OpenAPIType.STRING,
            format="date-time",  # type: ignore[arg-type]
            description="ISO 8601 with a UTC offset, not in the future",
        ),
        "node_id": _UUID,
        "model_version_id": _UUID,
        "attrs": Schema(type=OpenAPIType.OBJECT),
    },
)
USAGE_IMPORT_EXAMPLE = {
    "tenant_id": "6f1c2a0e-1d2b-4c3d-8e9f-0a1b2c3d4e5f",
    "id": "egress-2026-04-03-0001",
    "meter": "egress",
    "quantity": 1_000_000_000,
    "occurred_at": "2026-04-03T10:00:00Z",
}
USAGE_IMPORT_BODY = {
    "application/json": OpenAPIMediaType(
        schema=Schema(
            type=OpenAPIType.OBJECT,
            required=["events"],
            properties={"events": Schema(type=OpenAPIType.ARRAY, items=USAGE_EVENT, min_items=1)},
        ),
        example={"events": [USAGE_IMPORT_EXAMPLE]},
    ),
    "text/csv": OpenAPIMediaType(
        schema=Schema(
            type=OpenAPIType.STRING,
            description="A header row naming the same fields "
            "(tenant_id,id,meter,quantity,occurred_at[,node_id,model_version_id]), then one "
            "event per row.",
        ),
        example="tenant_id,id,meter,quantity,occurred_at\n"
        + ",".join(str(v) for v in USAGE_IMPORT_EXAMPLE.values())
        + "\n",
    ),
}


def health_responses() -> dict[str, OpenAPIResponse]:
    """``/healthz`` answers in its own shape, for load balancers and people."""
    body = Schema(
        type=OpenAPIType.OBJECT,
        required=["status"],
        properties={
            "status": Schema(type=OpenAPIType.STRING, enum=["ok", "unavailable"]),
            "problems": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING)),
        },
    )
    content = {"application/json": OpenAPIMediaType(schema=body)}
    return {
        "200": OpenAPIResponse(description="Postgres and S3 answer.", content=content),
        "503": OpenAPIResponse(
            description="Postgres or S3 does not answer; `problems` says which.",
            headers={"Retry-After": _string_header("seconds to wait")},
            content=content,
        ),
    }
