"""Scheduled jobs, listed and run once by the platform operator over the API, so
`hangar jobs run` works against `hangar up` and production alike without database or
S3 settings on the operator's machine. A job owns its transactions (as when the
scheduler runs it); this route only starts it and returns its report."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from pydantic import AwareDatetime, BaseModel, Field

from core.errors import NotFound
from services.api.auth import provide_operator
from services.api.openapi import doc
from services.api.paging import After, Limit, paged
from services.components import Components
from services.scheduler import JOBS, run_job


class JobOut(BaseModel):
    name: str
    schedule: str
    what: str


class JobRun(BaseModel):
    at: AwareDatetime | None = Field(
        default=None, description="act as of this time (backfills); default now"
    )


class JobResult(BaseModel):
    job: str
    ran: bool = Field(description="false when another process was running it (try again)")
    report: dict[str, Any] | None


class JobController(Controller):
    path = "/v1/jobs"
    tags = ["operator"]
    dependencies = {"operator": Provide(provide_operator)}

    @get("/")
    async def list(
        self, request: Request, operator: None, after: After = None, limit: Limit = 1000
    ) -> Response[list[JobOut]]:
        found = [JobOut(name=j.name, schedule=str(j.trigger), what=j.help) for j in JOBS.values()]
        return paged(request, found, key=lambda j: j.name, after=after, limit=limit)

    @post("/{name:str}/run", status_code=200, opt=doc(409))
    async def run(
        self, hangar: Components, name: str, operator: None, data: JobRun | None = None
    ) -> JobResult:
        """Run one job now (idempotent: running it twice changes nothing the second time)."""
        if name not in JOBS:
            raise NotFound(f"no job {name!r}; one of: {', '.join(JOBS)}")
        report = await run_job(hangar, name, now=data.at if data else None)
        return JobResult(job=name, ran=report is not None, report=report)
