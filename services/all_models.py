"""Import every ORM model so ``Base.metadata`` is complete (Alembic, tests)."""

from billing import models as billing_models  # noqa: F401
from core.db import Base
from fleet import models as fleet_models  # noqa: F401
from metering import models as metering_models  # noqa: F401
from registry import models as registry_models  # noqa: F401
from registry import signing as registry_signing  # noqa: F401
from registry import trust as registry_trust  # noqa: F401
from services.api import idempotency as idempotency_models  # noqa: F401
from tenants import models as tenant_models  # noqa: F401

metadata = Base.metadata
