"""What the registry asks before doing work that costs money. Billing implements it
(``billing.quotas.Quotas``) and ``services.components`` passes it in, so the registry
does not depend on billing. A refusal is raised as ``PaymentRequired`` (402)."""

from __future__ import annotations

import uuid
from typing import Protocol


class Quota(Protocol):
    async def check_upload_start(self, *, tenant_id: uuid.UUID, size: int | None) -> None: ...

    async def check_upload_complete(
        self, *, tenant_id: uuid.UUID, digest: str | None, size: int
    ) -> None: ...

    async def check_download(self, *, tenant_id: uuid.UUID, nbytes: int) -> None: ...


class NoQuota:
    """Everything allowed: for tools and tests that run the registry alone."""

    async def check_upload_start(self, *, tenant_id: uuid.UUID, size: int | None) -> None:
        return None

    async def check_upload_complete(
        self, *, tenant_id: uuid.UUID, digest: str | None, size: int
    ) -> None:
        return None

    async def check_download(self, *, tenant_id: uuid.UUID, nbytes: int) -> None:
        return None
