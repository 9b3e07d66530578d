"""The node's identity on disk: the credential from enrollment, readable by its owner only."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from pydantic import BaseModel


class Identity(BaseModel):
    server: str
    node_id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    credential: str
    # `hangar node enroll --advertise-url`: kept so that `hangar node run` uses it too.
    advertise_url: str | None = None


def path(data_dir: Path) -> Path:
    return data_dir / "node.json"


def save(data_dir: Path, identity: Identity) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    target, tmp = path(data_dir), data_dir / "node.json.tmp"
    # Created 0600 from the start: the credential is never world-readable, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(identity.model_dump(mode="json"), f, indent=2)
    os.replace(tmp, target)
    return target


def load(data_dir: Path) -> Identity:
    p = path(data_dir)
    if not p.exists():
        raise SystemExit(
            f"{p} not found: enroll this node first with "
            f"`hangar node enroll --server URL --token TOKEN --data-dir {data_dir}`, or, "
            "at a site with no link, set it up with "
            f"`hangar node init-offline IDENTITY.json --data-dir {data_dir}`"
        )
    return Identity.model_validate_json(p.read_text())
