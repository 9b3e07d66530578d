"""Which models this node may load: the one place the node checks publishers'
signatures (format: ``wire.signing``) against the tenant's trusted keys.

Both come with the desired state, so the rule is the same however a model got here
(downloaded from the control plane or a peer, or installed from an offline bundle,
which embeds the desired state as the API returns it): the syncer checks after every
download and at every sync, and serving checks again right before every load.

A model is refused (state ``untrusted``, with the reason) when:
- it is unsigned and the tenant requires signatures;
- a signature by a trusted key does not verify for its digest (tampered, or made for
  other bytes);
- it is signed, but by no key the tenant trusts now (a revoked key): a signature
  vouches for a model only while its key is trusted.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from wire.contract import DesiredModel, DesiredState
from wire.signing import verify


@dataclass(frozen=True)
class TrustPolicy:
    keys: dict[str, bytes] = field(default_factory=dict)  # key_id -> raw Ed25519 key
    names: dict[str, str] = field(default_factory=dict)  # key_id -> name
    require: bool = False

    @classmethod
    def of(cls, desired: DesiredState) -> TrustPolicy:
        keys, names = {}, {}
        for k in desired.trusted_keys:
            try:
                raw = base64.b64decode(k.public_key, validate=True)
            except (binascii.Error, ValueError):
                continue  # a key that cannot verify anything vouches for nothing
            if len(raw) == 32:
                keys[k.key_id], names[k.key_id] = raw, k.name
        return cls(keys=keys, names=names, require=desired.require_signatures)


def refusal(model: DesiredModel, policy: TrustPolicy) -> str | None:
    """None if ``model`` may load under ``policy``; else why not, for `nodes show`."""
    if not model.signatures:
        if policy.require:
            return (
                "unsigned, and this tenant requires signed models: "
                f"sign it with `hangar models sign {model.name}@{model.digest} --sign-key KEY.pem`"
            )
        return None
    good, bad, unknown = [], [], []
    for sig in model.signatures:
        raw = policy.keys.get(sig.key_id)
        if raw is None:
            unknown.append(sig.key_id)
        elif verify(raw, sig, model.digest):
            good.append(sig.key_id)
        else:
            bad.append(sig.key_id)
    if bad:
        who = ", ".join(f"{policy.names[k]!r} ({k})" for k in bad)
        return (
            f"the signature by trusted key {who} does not verify for {model.digest}: "
            "tampered, or made for other bytes"
        )
    if good:
        return None
    return (
        f"signed only by key(s) this tenant does not trust now ({', '.join(unknown)}): "
        "revoked or never added (`hangar trust ls`)"
    )
