"""``node_runtime`` is a separate lightweight install: it must never pull in the
control plane, its database drivers or the domain packages."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = {
    "services",
    "registry",
    "metering",
    "billing",
    "sqlalchemy",
    "asyncpg",
    "alembic",
    "minio",
}


def test_node_runtime_imports_nothing_from_the_server_side():
    code = (
        "import sys, pkgutil, importlib, node_runtime\n"
        "for m in pkgutil.iter_modules(node_runtime.__path__): importlib.import_module('node_runtime.' + m.name)\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    assert "node_runtime" in loaded
    assert loaded & FORBIDDEN == set()
