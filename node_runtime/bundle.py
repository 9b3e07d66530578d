"""A node with no link at all: its identity comes from a file (`hangar nodes
create-offline`), its models from signed bundles (`hangar bundle create`).

A bundle is installed all or nothing: the manifest signature (the control plane's key
from the identity file), tenant, node and every blob digest are checked while the blobs
go to a staging directory; only then do the blobs move into the cache and the desired
state is replaced (the commit point). A refused bundle leaves the node as it was."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from node_runtime import identity, trust
from node_runtime.cache import BlobCache
from wire import signed_files
from wire.contract import DesiredState
from wire.offline import BUNDLE, BundleBody, OfflineIdentity

CONTROL_PLANE_KEY = "control-plane.pub"
NODE_KEY = "node-key.pem"
INSTALLED = "bundle.json"
DESIRED = "desired.json"  # what the agent applies at start (node_runtime.agent)


class BundleRefused(Exception):
    """Nothing was changed; the message says what is wrong with the file."""


class Installed(BaseModel):
    bundle_id: uuid.UUID
    created_at: datetime
    revision: int
    models: list[str]


@dataclass(frozen=True)
class Imported:
    installed: Installed
    already: bool
    blobs_written: int
    # Models the node will refuse to load (publisher signatures), and why.
    untrusted: list[str] = field(default_factory=list)


def _untrusted(desired: DesiredState) -> list[str]:
    """Signed models are checked by ``node_runtime.trust`` before every load, as for a
    model fetched online; said here too, so the operator at the site learns it at import."""
    policy = trust.TrustPolicy.of(desired)
    return [f"{m.name}:{m.ref}: {why}" for m in desired.models if (why := trust.refusal(m, policy))]


def node_key_path(data_dir: Path) -> Path:
    return data_dir / NODE_KEY


def init_offline(source: Path, data_dir: Path) -> OfflineIdentity:
    """Install the identity file on the machine and make the node's own key pair (its
    public half is pinned by the control plane with the first report file)."""
    try:
        ident = OfflineIdentity.model_validate_json(source.read_bytes())
        signed_files.parse_key(ident.control_plane_key)
    except (OSError, ValueError) as exc:
        raise BundleRefused(
            f"{source} is not an identity file from `hangar nodes create-offline`: {exc}"
        ) from None
    if identity.path(data_dir).exists():
        current = identity.load(data_dir)
        if current.node_id != ident.node_id:
            raise BundleRefused(
                f"{data_dir} already holds node {current.node_id}; use another --data-dir"
            )
    identity.save(
        data_dir,
        identity.Identity(
            server="",
            node_id=ident.node_id,
            tenant_id=ident.tenant_id,
            name=ident.name,
            credential=ident.credential,
        ),
    )
    (data_dir / CONTROL_PLANE_KEY).write_text(ident.control_plane_key + "\n")
    signed_files.load_or_create_key(node_key_path(data_dir))
    return ident


def _installed(data_dir: Path) -> Installed | None:
    try:
        return Installed.model_validate_json((data_dir / INSTALLED).read_bytes())
    except (OSError, ValueError):
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def import_bundle(source: Path, data_dir: Path) -> Imported:
    me = identity.load(data_dir)
    try:
        cp_key = signed_files.parse_key((data_dir / CONTROL_PLANE_KEY).read_text())
    except (OSError, signed_files.SignedFileError):
        raise BundleRefused(
            f"{data_dir} has no control plane key: set this node up with "
            "`hangar node init-offline IDENTITY.json` first"
        ) from None
    try:
        size = source.stat().st_size
        f = source.open("rb")
    except OSError as exc:
        raise BundleRefused(f"cannot read {source}: {exc.strerror}") from None
    with f:
        try:
            manifest = signed_files.open_signed(f, kind=BUNDLE, key_for=lambda _: cp_key, size=size)
            body = BundleBody.model_validate(manifest)
        except signed_files.SignedFileError as exc:
            raise BundleRefused(str(exc)) from None
        except ValidationError as exc:
            raise BundleRefused(f"the manifest is not a bundle manifest: {exc}") from None
        desired = _mine(body, me)
        bundle_id, created = (
            uuid.UUID(manifest["id"]),
            datetime.fromisoformat(manifest["created_at"]),
        )
        before = _installed(data_dir)
        if before is not None and before.bundle_id == bundle_id:
            return Imported(before, already=True, blobs_written=0)
        if before is not None and created <= before.created_at:
            raise BundleRefused(
                f"this bundle was made at {created.isoformat()}, before the one installed "
                f"({before.bundle_id}, {before.created_at.isoformat()}): an old bundle is not "
                "installed again; make a new one with `hangar bundle create`"
            )
        listed = dict(signed_files.blob_list(manifest))
        for m in desired.models:
            if listed.get(m.digest) != m.size:
                raise BundleRefused(f"the bundle does not carry {m.name} ({m.digest})")
        cache = BlobCache(data_dir)
        for left in data_dir.glob("bundle-staging-*"):  # from an import that was killed
            shutil.rmtree(left, ignore_errors=True)
        staging = data_dir / f"bundle-staging-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            staged = _stage(f, manifest, desired, cache, staging)
            _commit(staged, cache, staging, data_dir, desired)
        except signed_files.SignedFileError as exc:
            raise BundleRefused(str(exc)) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    installed = Installed(
        bundle_id=bundle_id,
        created_at=created,
        revision=desired.revision,
        models=[f"{m.name}:{m.ref}" for m in desired.models],
    )
    _write_atomic(data_dir / INSTALLED, installed.model_dump_json().encode())
    return Imported(
        installed, already=False, blobs_written=len(staged), untrusted=_untrusted(desired)
    )


def _mine(body: BundleBody, me: identity.Identity) -> DesiredState:
    if body.tenant_id != me.tenant_id:
        raise BundleRefused(
            f"this bundle is for tenant {body.tenant_id}; this node belongs to tenant {me.tenant_id}"
        )
    desired = body.nodes.get(me.node_id)
    if desired is None:
        names = ", ".join(str(n) for n in list(body.nodes)[:5])
        raise BundleRefused(f"this bundle is for node(s) {names}; this node is {me.node_id}")
    return desired


def _stage(f, manifest: dict, desired: DesiredState, cache: BlobCache, staging: Path) -> list[str]:
    """Every blob is read and digest-checked (a bundle is accepted whole or not at all);
    those this node needs and lacks are kept in ``staging``."""
    needed = {m.digest for m in desired.models}
    staged = []
    for digest, _, chunks in signed_files.read_blobs(f, manifest):
        keep = digest in needed and not cache.verify(digest)
        if not keep:
            for _ in chunks:  # still checked against its digest
                pass
            continue
        target = staging / cache.path(digest).name
        with target.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
        staged.append(digest)
    return staged


def _commit(
    staged: list[str], cache: BlobCache, staging: Path, data_dir: Path, desired: DesiredState
) -> None:
    for digest in staged:
        os.replace(staging / cache.path(digest).name, cache.path(digest))
    # The commit point: from here the node serves what this bundle says.
    _write_atomic(data_dir / DESIRED, json.dumps(desired.model_dump(mode="json")).encode())
