"""``hangar trust …`` (the tenant's trusted signing keys and signature rule) and
``hangar models sign``. Signing happens here, on the publisher's machine: only the
signature goes to the control plane, never the private key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.cli.client import JSON, USAGE, call, emit, fail, print_json, say, show_table
from wire.refs import format_ref, is_digest
from wire.signing import MAX_KEY_BYTES, Signature, SigningError, load_private_key, sign

trust = typer.Typer(
    help="Signing keys this tenant trusts, and whether models must be signed.",
    no_args_is_help=True,
)

SIGN_KEY_HELP = "Ed25519 private key (PEM or OpenSSH) to sign with; it never leaves this machine"


def signer(path: Path) -> Ed25519PrivateKey:
    """Load a private key before any work, so a bad one ends the command at once."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read signing key {path}: {exc.strerror or exc}")
    try:
        return load_private_key(data)
    except SigningError as exc:
        fail(f"{path}: {exc}")


def signature_for(key: Ed25519PrivateKey, digest: str) -> Signature:
    return sign(key, digest)


@trust.command("add")
def trust_add(
    name: str,
    public_key: Annotated[Path, typer.Argument(help="the public key file (KEY.pub)")],
    json: JSON = False,
) -> None:
    """Trust a publisher's Ed25519 public key under NAME."""
    try:
        size = public_key.stat().st_size
        if size > MAX_KEY_BYTES:
            fail(
                f"{public_key} is {size} bytes; an Ed25519 public key file is under "
                f"{MAX_KEY_BYTES} bytes (give KEY.pub)"
            )
        text = public_key.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        fail(f"cannot read {public_key}: {exc.strerror or exc}")
    key = call("POST", "/v1/trust/keys", json={"name": name, "public_key": text})
    emit(key, f"trusted {key['name']}  {key['key_id']}", json)


@trust.command("ls")
def trust_ls(json: JSON = False) -> None:
    """List trusted keys and whether signatures are required."""
    found = call("GET", "/v1/trust/")
    if json:
        return print_json(found)
    say.print(f"signatures required: {'on' if found['require_signatures'] else 'off'}")
    show_table(
        ["name", "key id", "added"],
        [[k["name"], k["key_id"], k["created_at"]] for k in found["keys"]],
    )


@trust.command("rm")
def trust_rm(name: str, json: JSON = False) -> None:
    """Stop trusting a key: nodes unload models only it signed at their next sync."""
    call("DELETE", f"/v1/trust/keys/{name}")
    emit({"name": name, "trusted": False}, f"no longer trusted: {name}", json)


@trust.command("require")
def trust_require(
    state: Annotated[str, typer.Argument(help="on or off")], json: JSON = False
) -> None:
    """on: unsigned pushes are refused and nodes load only signed models."""
    if state not in ("on", "off"):
        raise typer.BadParameter(f"{state!r}: say on or off")
    found = call("PUT", "/v1/trust/require", json={"require_signatures": state == "on"})
    emit(found, f"signatures required: {state}", json)


@trust.command("keygen")
def trust_keygen(
    path: Annotated[Path, typer.Argument(help="writes PATH.pem (private, 0600) and PATH.pub")],
    json: JSON = False,
) -> None:
    """Make an Ed25519 key pair for signing models (keep the .pem to yourself)."""
    private, public = path.with_suffix(".pem"), path.with_suffix(".pub")
    for p in (private, public):
        if p.exists():
            fail(f"{p} exists; not overwriting a key", USAGE)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    emit(
        {"private_key": str(private), "public_key": str(public)},
        f"wrote {private} (private) and {public}; `hangar trust add NAME {public}`",
        json,
    )


def models_sign(
    ref: Annotated[
        str,
        typer.Argument(
            help="NAME@sha256:… (the digest you published), or NAME:TAG / NAME:VERSION with --file"
        ),
    ],
    sign_key: Annotated[Path, typer.Option("--sign-key", help=SIGN_KEY_HELP)],
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="your copy of the model file: hashed here, and its sha256 must be the "
            "version's digest",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    json: JSON = False,
) -> None:
    """Sign an existing version, vouching only for bytes you hold: give the digest you
    published (NAME@sha256:…) or the file itself (--file). A tag or version number alone
    is refused: the server's digest for it could have been moved to other bytes."""
    from services.cli.transfer import progress_bar, sha256_file, split_ref

    name, version = split_ref(ref)
    if file is None and not is_digest(version):
        fail(
            f"{ref}: say which bytes you vouch for, either the digest you published "
            f"(`hangar models sign {name}@sha256:<hex> --sign-key KEY`) or your copy of the "
            f"file (`hangar models sign {ref} --file MODEL.gguf --sign-key KEY`)",
            USAGE,
        )
    key = signer(sign_key)
    expected = version if is_digest(version) else None
    if file is not None:
        with progress_bar() as progress:
            hashed = sha256_file(file, progress)
        if expected is not None and hashed != expected:
            fail(f"{file} is {hashed}, not {expected}; not signing")
        expected = hashed
    found = call("GET", f"/v1/models/{name}/versions/{version}")
    if found["digest"] != expected:
        fail(
            f"{format_ref(name, version)} on the server is {found['digest']}, but your "
            f"{'file' if file is not None else 'digest'} is {expected}; not signing. "
            f"Check who moved it (`hangar models show {name}`)"
        )
    sig = signature_for(key, expected)
    # Posted to the digest, not the tag: a tag moved meanwhile cannot receive it.
    signed = call(
        "POST",
        f"/v1/models/{name}/versions/{expected}/signatures",
        json={"signature": sig.model_dump()},
    )
    emit(
        signed,
        f"signed {name} version {signed['number']} ({signed['digest']}) with {sig.key_id}",
        json,
    )


def register(app: typer.Typer, models: typer.Typer) -> None:
    app.add_typer(trust, name="trust")
    models.command("sign")(models_sign)


def signed_by(version: dict) -> str:
    """For `models show`: who signed a version (a key no longer trusted is marked)."""
    names = [
        (s["key_name"] or s["key_id"]) + ("" if s["trusted"] else " (untrusted)")
        for s in version.get("signatures", [])
    ]
    return ", ".join(names) or "-"
