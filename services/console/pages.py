"""Sign in and out, the overview, and the model registry pages."""

from __future__ import annotations

from litestar import Request, get, post
from litestar.response import Redirect, Response
from sqlalchemy.ext.asyncio import AsyncSession

from billing import invoices
from billing.usage_overview import usage_overview
from core.db import utcnow
from core.errors import HangarError
from fleet.revisions import model_changed
from metering.periods import Period
from registry import service as registry
from services.components import Components
from services.console.fleet_pages import state_counts
from services.console.render import back, form, page, required
from services.console.session import COOKIE, PATH, ConsoleUser, Sessions, sign_in
from tenants.schemas import Scope


def _safe_next(value: str | None) -> str:
    # Only our own pages: never an open redirect to another site.
    if value and value.startswith(PATH + "/") and not value.startswith("//"):
        return value
    return PATH + "/"


@get("/login")
async def login_page(next: str | None = None, why: str | None = None) -> Response:
    return page("login.html", ConsoleUser(principal=None), "Sign in", next=next, why=why)


@post("/login")
async def login(request: Request, hangar: Components, sessions: Sessions) -> Response:
    data = await form(request)
    try:
        cookie = await sign_in(hangar, sessions, data.get("key", ""))
    except HangarError as exc:
        return page(
            "login.html",
            ConsoleUser(principal=None),
            "Sign in",
            status=exc.status,
            error=exc.message,
            next=data.get("next"),
        )
    response = back(_safe_next(data.get("next")))
    response.set_cookie(
        COOKIE,
        cookie,
        path=PATH,
        max_age=sessions.max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@post("/logout")
async def logout() -> Redirect:
    response = back(PATH + "/login")
    response.delete_cookie(COOKIE, path=PATH)
    return response


@get("/")
async def overview(db: AsyncSession, hangar: Components, user: ConsoleUser) -> Response:
    if user.operator:
        return back(PATH + "/operator")
    principal = user.tenant_principal()
    principal.require(Scope.read, Scope.finance)
    context: dict = {}
    if user.can(Scope.read):
        context["states"] = await state_counts(
            db,
            tenant_id=principal.tenant_id,
            offline_after=hangar.settings.fleet.offline_after_seconds,
        )
        models = await registry.list_models(db, tenant_id=principal.tenant_id)
        context["models"] = len(models)
        context["versions"] = sum(m.versions for m in models)
    if user.can(Scope.finance):
        period, now = Period.containing(utcnow()), utcnow()
        context["draft"] = await invoices.preview(db, tenant_id=principal.tenant_id, period=period)
        usage = await usage_overview(
            db, tenant_id=principal.tenant_id, period=period, now=now, names=hangar.usage_names
        )
        context["limits"] = usage.limits
        context["plan_title"] = usage.plan_title
    return page("overview.html", user, "Overview", nav="overview", **context)


@get("/models")
async def models_page(db: AsyncSession, user: ConsoleUser) -> Response:
    principal = user.tenant_principal()
    principal.require(Scope.read)
    found = await registry.list_models(db, tenant_id=principal.tenant_id)
    return page("models.html", user, "Models", nav="models", models=found)


@get("/models/{name:str}")
async def model_page(db: AsyncSession, user: ConsoleUser, name: str) -> Response:
    principal = user.tenant_principal()
    principal.require(Scope.read)
    model = registry.model_out(
        await registry.get_model(db, tenant_id=principal.tenant_id, name=name)
    )
    return page("model.html", user, f"Model {model.name}", nav="models", model=model)


@post("/models/{name:str}/tags")
async def move_tag(request: Request, db: AsyncSession, user: ConsoleUser, name: str) -> Response:
    principal = user.tenant_principal()
    principal.require_admin()
    data = await form(request)
    tag = required(data, "tag", "the tag")
    number = required(data, "version", "the version number")
    if not number.isdigit():
        raise HangarError(f"the version must be a number, not {number!r}")
    await registry.move_tag(
        db,
        tenant_id=principal.tenant_id,
        name=name,
        tag=tag,
        number=int(number),
        on_change=model_changed,
    )
    return back(f"{PATH}/models/{name}")


@post("/models/{name:str}/versions/{ref:str}/delete")
async def delete_version(db: AsyncSession, user: ConsoleUser, name: str, ref: str) -> Response:
    principal = user.tenant_principal()
    principal.require_admin()
    await registry.delete_version(
        db, tenant_id=principal.tenant_id, name=name, ref=ref, on_change=model_changed
    )
    return back(f"{PATH}/models/{name}")


HANDLERS = [login_page, login, logout, overview, models_page, model_page, move_tag, delete_version]
