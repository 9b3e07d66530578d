"""Models, versions and tags. Every query is scoped to one tenant."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.db import utcnow
from core.errors import NotFound
from registry.events import ModelChanged
from registry.models import Blob, Model, ModelVersion, Tag
from registry.schemas import ModelOut, ModelSummary, VersionOut
from wire.refs import check_digest, check_name, check_tag, is_digest, is_plain_number


async def get_model(session: AsyncSession, *, tenant_id: uuid.UUID, name: str) -> Model:
    check_name(name)
    model = await session.scalar(
        select(Model)
        .where(Model.tenant_id == tenant_id, Model.name == name)
        .options(selectinload(Model.versions), selectinload(Model.tags))
    )
    if model is None:
        raise NotFound(f"no model named {name!r}; `hangar models ls` lists this tenant's models")
    return model


def _tags_by_version(model: Model) -> dict[uuid.UUID, list[str]]:
    out: dict[uuid.UUID, list[str]] = {}
    for tag in model.tags:
        out.setdefault(tag.version_id, []).append(tag.name)
    return out


def version_out(version: ModelVersion, tags: list[str]) -> VersionOut:
    return VersionOut(
        number=version.number,
        digest=version.digest,
        size=version.size,
        tags=sorted(tags),
        gguf=version.gguf,
        created_at=version.created_at,
    )


def model_out(model: Model) -> ModelOut:
    tags = _tags_by_version(model)
    numbers = {v.id: v.number for v in model.versions}
    return ModelOut(
        name=model.name,
        created_at=model.created_at,
        tags={t.name: numbers[t.version_id] for t in model.tags},
        versions=[version_out(v, tags.get(v.id, [])) for v in model.versions],
    )


async def list_models(session: AsyncSession, *, tenant_id: uuid.UUID) -> list[ModelSummary]:
    models = await session.scalars(
        select(Model)
        .where(Model.tenant_id == tenant_id)
        .order_by(Model.name)
        .options(selectinload(Model.versions), selectinload(Model.tags))
    )
    out = []
    for model in models:
        full = model_out(model)
        out.append(
            ModelSummary(
                name=full.name,
                versions=len(full.versions),
                tags=full.tags,
                latest=full.versions[-1] if full.versions else None,
                created_at=full.created_at,
            )
        )
    return out


def resolve_in(model: Model, ref: str) -> ModelVersion:
    """``ref`` is a version number, a tag or a ``sha256:`` digest."""
    if is_digest(ref):
        check_digest(ref)
        found = next((v for v in model.versions if v.digest == ref), None)
    elif is_plain_number(ref):
        found = next((v for v in model.versions if v.number == int(ref)), None)
    else:
        tag = next((t for t in model.tags if t.name == ref), None)
        found = next((v for v in model.versions if tag and v.id == tag.version_id), None)
    if found is None:
        raise NotFound(f"model {model.name!r} has no version, tag or digest {ref!r}")
    return found


async def resolve(
    session: AsyncSession, *, tenant_id: uuid.UUID, name: str, ref: str
) -> tuple[Model, ModelVersion]:
    model = await get_model(session, tenant_id=tenant_id, name=name)
    return model, resolve_in(model, ref)


async def get_blob(session: AsyncSession, *, blob_id: uuid.UUID) -> Blob:
    blob = await session.get(Blob, blob_id)
    assert blob is not None  # versions reference blobs with a foreign key
    return blob


async def add_version(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    name: str,
    tag: str,
    blob: Blob,
    gguf: dict[str, Any],
    on_change: ModelChanged,
) -> ModelVersion:
    """Create (or reuse, for the same digest) a version and point ``tag`` at it."""
    await session.execute(
        insert(Model)
        .values(id=uuid.uuid4(), tenant_id=tenant_id, name=name, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["tenant_id", "name"])
    )
    # Lock the model row so concurrent pushes get consecutive version numbers.
    model = await session.scalar(
        select(Model).where(Model.tenant_id == tenant_id, Model.name == name).with_for_update()
    )
    assert model is not None
    version = await session.scalar(
        select(ModelVersion).where(
            ModelVersion.model_id == model.id, ModelVersion.digest == blob.digest
        )
    )
    if version is None:
        last = await session.scalar(
            select(func.max(ModelVersion.number)).where(ModelVersion.model_id == model.id)
        )
        version = ModelVersion(
            tenant_id=tenant_id,
            model_id=model.id,
            number=(last or 0) + 1,
            blob_id=blob.id,
            digest=blob.digest,
            size=blob.size,
            gguf=gguf,
        )
        session.add(version)
        await session.flush()
    await set_tag(session, model_id=model.id, tag=tag, version_id=version.id, on_change=on_change)
    return version


async def set_tag(
    session: AsyncSession,
    *,
    model_id: uuid.UUID,
    tag: str,
    version_id: uuid.UUID,
    on_change: ModelChanged,
) -> None:
    check_tag(tag)
    stmt = insert(Tag).values(
        model_id=model_id, name=tag, version_id=version_id, updated_at=utcnow()
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["model_id", "name"],
            set_={"version_id": stmt.excluded.version_id, "updated_at": stmt.excluded.updated_at},
        )
    )
    # Nodes following this model by tag must fetch their desired state again.
    await on_change(session, model_id=model_id)


async def move_tag(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    name: str,
    tag: str,
    number: int,
    on_change: ModelChanged,
) -> ModelOut:
    model = await get_model(session, tenant_id=tenant_id, name=name)
    version = resolve_in(model, str(number))
    await set_tag(session, model_id=model.id, tag=tag, version_id=version.id, on_change=on_change)
    session.expire_all()
    return model_out(await get_model(session, tenant_id=tenant_id, name=name))


async def delete_tag(
    session: AsyncSession, *, tenant_id: uuid.UUID, name: str, tag: str, on_change: ModelChanged
) -> None:
    model = await get_model(session, tenant_id=tenant_id, name=name)
    found = next((t for t in model.tags if t.name == tag), None)
    if found is None:
        raise NotFound(f"model {name!r} has no tag {tag!r}")
    await session.delete(found)
    await session.flush()
    await on_change(session, model_id=model.id)


async def delete_version(
    session: AsyncSession, *, tenant_id: uuid.UUID, name: str, ref: str, on_change: ModelChanged
) -> None:
    """Delete a version and the tags on it. Its blob stays until the GC job finds
    no version of this tenant still using it."""
    model, version = await resolve(session, tenant_id=tenant_id, name=name, ref=ref)
    # Before the delete: if it was the last version, the model's deployments go with it.
    await on_change(session, model_id=model.id)
    # Core deletes: the database cascades to tags (and versions), so the ORM never
    # tries to delete child rows that are already gone.
    if len(model.versions) == 1:  # the last one: the model goes too
        await session.execute(delete(Model).where(Model.id == model.id))
    else:
        await session.execute(delete(ModelVersion).where(ModelVersion.id == version.id))
    session.expunge(model)


async def version_names(
    session: AsyncSession, *, ids: set[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, int]]:
    """Version id -> (model name, number), for usage reports; deleted versions are absent."""
    if not ids:
        return {}
    rows = await session.execute(
        select(ModelVersion.id, Model.name, ModelVersion.number)
        .join(Model, Model.id == ModelVersion.model_id)
        .where(ModelVersion.id.in_(ids))
    )
    return {vid: (name, number) for vid, name, number in rows}


async def storage_bytes(session: AsyncSession, *, tenant_id: uuid.UUID) -> int:
    """Bytes of distinct blobs the tenant's versions use (what the storage meter
    samples). A blob no version uses is free at once, before GC deletes it."""
    in_use = select(ModelVersion.id).where(ModelVersion.blob_id == Blob.id).exists()
    total = await session.scalar(
        select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.tenant_id == tenant_id, in_use)
    )
    return int(total or 0)
