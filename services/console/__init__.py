"""The web console under ``/console``: server-rendered Jinja pages with htmx for live
parts, every asset inside this package. Pages call the same domain services as the
API under the same scopes (``Principal.require``); the session is a signed cookie
(see ``session.py``) and every unsafe request needs Litestar's CSRF token."""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.config.csrf import CSRFConfig
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from core.settings import Settings
from services.console import fleet_pages, money_pages, operator_pages, pages
from services.console.errors import HANDLERS
from services.console.session import PATH, ConsoleSettings, Sessions, current_user, signing_secret

HERE = Path(__file__).parent


def template_config() -> TemplateConfig:
    # Jinja's autoescape is on for .html templates: every value is escaped unless marked safe.
    return TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine)


def console_router(settings: Settings) -> Router:
    console = ConsoleSettings()
    secret = signing_secret(settings, console)
    sessions = Sessions(secret, console.session_hours, settings.operator_token.get_secret_value())
    csrf = CSRFConfig(
        secret=secret.hex(),
        cookie_name="hangar_csrf",
        cookie_path=PATH,
        cookie_httponly=True,
        cookie_samesite="strict",
        header_name="x-csrf-token",
    )
    static = create_static_files_router(
        path="/static",
        directories=[HERE / "static"],
        cache_control=CacheControlHeader(max_age=3600),
        include_in_schema=False,
    )
    return Router(
        path=PATH,
        route_handlers=[
            *pages.HANDLERS,
            *fleet_pages.HANDLERS,
            *money_pages.HANDLERS,
            *operator_pages.HANDLERS,
            static,
        ],
        dependencies={
            "sessions": Provide(lambda: sessions, sync_to_thread=False),
            "user": Provide(current_user),
        },
        # Scoped to /console: API clients send bearer tokens and never see a CSRF check.
        middleware=[DefineMiddleware(CSRFMiddleware, config=csrf)],
        exception_handlers=HANDLERS,
        include_in_schema=False,
    )
