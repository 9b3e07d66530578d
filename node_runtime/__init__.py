"""The agent on each machine: enroll, heartbeat, sync, serve, report.

Never imports ``services``, ``registry``, SQLAlchemy or asyncpg: it is installed
alone (``hangar[node]``) and talks to the control plane over HTTP only."""

__version__ = "0.1.0"
