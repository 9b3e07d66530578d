"""Report files out of a node with no link: the heartbeats its outbox kept, signed by
the node's own key (`hangar node export-reports`). The control plane pins that key on
the first import, vouched for by the node's credential (``wire.offline.credential_proof``)."""

from __future__ import annotations

import os
from pathlib import Path

from node_runtime import identity
from node_runtime.bundle import node_key_path
from node_runtime.outbox import Outbox
from wire import signed_files
from wire.offline import REPORTS, ReportsBody, credential_proof, hash_credential, model_body

# Per file: well under the control plane's 64 MB limit for one import.
MAX_REPORTS = 20_000


def export_reports(data_dir: Path, output: Path) -> tuple[int, int]:
    """Write the oldest queued reports to ``output``; returns (written, still queued).
    They leave the outbox only once the file is complete on disk."""
    me = identity.load(data_dir)
    key = signed_files.load_or_create_key(node_key_path(data_dir))
    node_key = signed_files.key_text(key.public_key())
    outbox = Outbox(data_dir, max_items=MAX_REPORTS)
    items = outbox.peek(MAX_REPORTS)
    body = ReportsBody(
        tenant_id=me.tenant_id,
        node_id=me.node_id,
        node_key=node_key,
        credential_proof=credential_proof(hash_credential(me.credential), node_key),
        reports=[beat for _, beat in items],
    )
    data = signed_files.header(kind=REPORTS, body=model_body(body), key=key)
    tmp = output.with_name(output.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, output)
    outbox.remove([path for path, _ in items])
    return len(items), len(outbox)
