from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from tenants.plans import OpeningPlan, Plan


class Scope(StrEnum):
    admin = "admin"
    finance = "finance"
    read = "read"


class TenantCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    # starter (which begins with the free trial), payg or enterprise.
    plan: OpeningPlan = Plan.starter.value  # type: ignore[valid-type]


class TenantOut(BaseModel):
    id: uuid.UUID
    name: str
    # The plan in force now (billing's answer: a new Starter tenant is on ``trial``).
    plan: Plan
    created_at: datetime


class ApiKeyCreate(BaseModel):
    name: str = Field(default="default", min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")
    scopes: list[Scope] = Field(default=[Scope.admin], min_length=1)


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    scopes: list[Scope]
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    # Shown exactly once, at creation.
    secret: str


class TenantCreated(TenantOut):
    admin_key: ApiKeyCreated
