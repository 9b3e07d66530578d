"""The Litestar application: routes, dependencies, error mapping, OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide

from core.settings import Settings
from services.api import (
    billing,
    fleet,
    health,
    invoices,
    jobs,
    openapi,
    registry,
    tenants,
    trust,
    usage,
)
from services.api.auth import provide_principal
from services.api.blobs import BlobController
from services.api.deps import provide_components, provide_db
from services.api.errors import HANDLERS
from services.api.guards import guards_middleware
from services.api.heartbeat_lane import HeartbeatLane
from services.api.idempotency import idempotency_middleware
from services.api.metrics import metrics_middleware
from services.api.offline import OFFLINE_ROUTES
from services.components import Components
from services.console import console_router, template_config


def create_app(settings: Settings, components: Components | None = None) -> HeartbeatLane:
    """The Litestar app, behind the heartbeat fast lane (which passes everything it
    does not answer itself through, and every attribute to the app)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        hangar = components or Components.build(settings)
        app.state.hangar = hangar
        try:
            yield
        finally:
            if components is None:
                await hangar.close()

    app = Litestar(
        route_handlers=[
            health.healthz,
            health.metrics,
            tenants.TenantController,
            tenants.KeyController,
            registry.ModelController,
            registry.UploadController,
            trust.TrustController,
            trust.SignatureController,
            BlobController,
            fleet.EnrollmentTokenController,
            fleet.NodeController,
            fleet.DeploymentController,
            fleet.NodeAgentController,
            fleet.RolloutController,
            usage.UsageController,
            usage.UsageImportController,
            invoices.InvoiceController,
            invoices.OperatorInvoiceController,
            billing.AccountController,
            billing.TenantBillingController,
            billing.stripe_webhook,
            jobs.JobController,
            *OFFLINE_ROUTES,
            console_router(settings),
            openapi.assets_router(),
        ],
        template_config=template_config(),
        dependencies={
            "hangar": Provide(provide_components, sync_to_thread=False),
            "db": Provide(provide_db),
            "principal": Provide(provide_principal),
        },
        exception_handlers=HANDLERS,
        # Guards first: a body idempotency would store is one a route can parse.
        middleware=[metrics_middleware, guards_middleware, idempotency_middleware],
        lifespan=[lifespan],
        openapi_config=openapi.config(),
        plugins=openapi.PLUGINS,
        debug=False,
    )
    openapi.document(app)
    return HeartbeatLane(app)
