"""The agent on each machine: enroll, heartbeat, sync, serve, report.

Never imports ``services``, ``registry``, SQLAlchemy or asyncpg: it is installed
alone (``hangar[node]``) and talks to the control plane over HTTP only."""

from pathlib import Path

__version__ = "0.1.0"

# The one default for a node's data dir (credential, model cache, outbox): enroll and
# run use it unless --data-dir or HANGAR_NODE_DATA_DIR say otherwise. Here, not in
# settings, so that `hangar --help` does not import pydantic-settings.
DEFAULT_DATA_DIR = Path(".hangar-node")
