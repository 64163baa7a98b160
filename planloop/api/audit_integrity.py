"""Proving nothing was altered: verify a plan's or the whole store's hash chains, read and publish signed
checkpoints, check the store against a checkpoint an auditor kept, and export a plan's bundle.

Auditors (and admins) may check the whole store; anyone may verify or export the plans within their org-unit
scopes and read the checkpoints and the public key; only admins publish a checkpoint on demand. Besides the
routes, this router's lifespan runs the checkpoint publisher: like the projector (see ``background``) it
holds a PostgreSQL advisory lock, so one API process publishes, every ``PLANLOOP_AUDIT_CHECKPOINT_INTERVAL``
seconds and only when the store changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from pydantic import BaseModel, Field

from eventstore import EventStore
from planloop.audit.bundle import export_bundle
from planloop.audit.checkpoints import (
    CheckpointError,
    CheckpointRefused,
    Checkpoints,
    SignedCheckpoint,
    break_json,
    describe_break,
)
from planloop.audit.extension import export_extension
from planloop.audit.keys import SigningKeyError, fingerprint, public_pem
from planloop.logging import get_logger
from workflows import plan_id

from .auth import Principal, Role, authenticated
from .background import TRY_LOCK, UNLOCK, _lock_connection, keep_running
from .errors import ERROR_RESPONSES, INVALID_REQUEST, NOT_FOUND, PLAN_NOT_FOUND, ApiError
from .idempotency import Answer, IdempotencyKey, once

log = get_logger(__name__)

#: The session advisory lock only one scheduled publisher holds ("ckpubshr"); each publish also takes
#: planloop.audit.checkpoints.PUBLISH_LOCK, so an on-demand publish and the schedule take turns.
PUBLISHER_LOCK: Final = 0x636B707562736872

STORE_NOT_CONSISTENT = "store_not_consistent"
NOTHING_TO_CHECKPOINT = "nothing_to_checkpoint"
INVALID_CHECKPOINT = "invalid_checkpoint"
SIGNING_KEY_UNUSABLE = "signing_key_unusable"


def checkpoints_of(app: FastAPI) -> Checkpoints:
    """The app's checkpoints; the signing key is read only when first needed, and made only by a publish."""
    found: Checkpoints | None = getattr(app.state, "checkpoints", None)
    if found is None:
        found = Checkpoints(app.state.store, app.state.settings.audit_key_path)
        app.state.checkpoints = found
    return found


async def publish_on_schedule(
    checkpoints: Checkpoints,
    stop: asyncio.Event,
    database_url: str | None,
    interval: float,
    *,
    standby_interval: float = 5.0,
) -> None:
    """Publish a checkpoint every ``interval`` seconds while this process holds the publisher lock."""
    standing_by = False
    while not stop.is_set():
        async with _lock_connection(checkpoints.store, database_url) as conn:
            if await conn.fetchval(TRY_LOCK, PUBLISHER_LOCK):
                log.info("checkpoint publisher running", interval=interval)
                try:
                    while not stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), interval)
                        if not stop.is_set():
                            await _publish_logged(checkpoints)
                finally:
                    with contextlib.suppress(Exception):
                        await conn.fetchval(UNLOCK, PUBLISHER_LOCK)
                return
        if not standing_by:
            log.info("another process publishes checkpoints; standing by", retry_every=standby_interval)
            standing_by = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), standby_interval)


async def _publish_logged(checkpoints: Checkpoints) -> None:
    try:
        checkpoint, new = await checkpoints.publish()
    except CheckpointRefused as exc:
        log.error("checkpoint refused: the store does not extend the last checkpoint", problem=str(exc))
    except SigningKeyError as exc:
        log.error("checkpoint not published: the signing key is unusable", problem=str(exc))
    else:
        if new and checkpoint is not None:
            body = checkpoint.body
            log.info(
                "checkpoint published",
                sequence=checkpoint.sequence,
                streams=body["streams"],
                events=body["events"],
                root=checkpoint.root,
            )


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.settings
    checkpoints = checkpoints_of(app)
    interval = settings.audit_checkpoint_interval
    if not interval:
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(
        keep_running(
            "checkpoint publisher",
            lambda: publish_on_schedule(checkpoints, stop, settings.database_url, interval),
            stop,
        ),
        name="checkpoint-publisher",
    )
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


router = APIRouter(prefix="/audit", tags=["audit"], responses=ERROR_RESPONSES, lifespan=lifespan)


# -- answers -------------------------------------------------------------------------------------------------


class Break(BaseModel):
    """The first event of a stream whose history does not hold, and why."""

    stream_id: str
    version: int
    event_id: str | None
    position: int | None
    reason: str


class PlanVerification(BaseModel):
    stream_id: str
    ok: bool
    events_checked: int
    breaks: list[Break]


class StoreVerification(BaseModel):
    ok: bool
    streams_checked: int
    events_checked: int
    seconds: float
    breaks: list[Break]


class CheckpointDocument(BaseModel):
    """A signed checkpoint as kept: its signed fields, their SHA-256 digest and the Ed25519 signature."""

    checkpoint: dict[str, Any]
    digest: str | None = None
    signature: str


class Published(BaseModel):
    published: bool = Field(description="False when the store had not changed since the latest checkpoint.")
    checkpoint: CheckpointDocument


class PublicKey(BaseModel):
    key_id: str = Field(description="ed25519: + SHA-256 of the raw public key; compare it out of band.")
    pem: str


class Consistency(BaseModel):
    ok: bool
    sequence: int
    digest: str
    key_id: str
    latest_sequence: int | None
    streams_checked: int
    events_checked: int
    problems: list[str]
    rewrites: list[Break] = Field(description="Streams rewritten since a checkpoint, pinned to an event.")
    breaks: list[Break] = Field(description="The first broken chain link of each stream.")


# -- helpers -------------------------------------------------------------------------------------------------


def _store(request: Request) -> EventStore:
    store: EventStore = request.app.state.store
    return store


async def _plan_stream(request: Request, principal: Principal, cycle_id: str, unit_id: str) -> str:
    """The plan's stream id, once the principal may see it and it exists (a 403 or 404 otherwise)."""
    await request.app.state.reader.require_scope(principal, cycle_id, unit_id)
    stream_id = plan_id(cycle_id, unit_id)
    store = _store(request)
    if not await store.stream_version(stream_id) and not await store.read_stream(stream_id, limit=1):
        raise ApiError(
            404,
            PLAN_NOT_FOUND,
            f"there is no plan of unit {unit_id} in cycle {cycle_id}; "
            f"GET /cycles/{cycle_id}/plans lists the cycle's plans",
        )
    return stream_id


def _key_failure(exc: SigningKeyError) -> ApiError:
    return ApiError(503, SIGNING_KEY_UNUSABLE, f"{exc} (PLANLOOP_AUDIT_KEY_FILE)")


def _document(checkpoint: SignedCheckpoint) -> CheckpointDocument:
    return CheckpointDocument.model_validate(checkpoint.document())


def _altered(exc: CheckpointError) -> ApiError:
    """A stored checkpoint that cannot be read or believed: the database's records were tampered with."""
    return ApiError(
        409,
        STORE_NOT_CONSISTENT,
        f"{exc}; the stored checkpoints cannot be trusted: run `planloop audit consistency` with a "
        "checkpoint you kept to see what else changed",
    )


# -- routes --------------------------------------------------------------------------------------------------


@router.get("/cycles/{cycle_id}/plans/{unit_id}/verify", response_model=PlanVerification)
async def verify_plan(
    request: Request, cycle_id: str, unit_id: str, principal: Annotated[Principal, Depends(authenticated)]
) -> PlanVerification:
    """Recompute the plan's hash chain from its stored events; name the first event that does not hold."""
    stream_id = await _plan_stream(request, principal, cycle_id, unit_id)
    report = await _store(request).verify(stream_id)
    return PlanVerification(
        stream_id=stream_id,
        ok=report.ok,
        events_checked=report.events_checked,
        breaks=[Break(**break_json(b)) for b in report.breaks],
    )


@router.get("/verify", response_model=StoreVerification)
async def verify_store(
    request: Request, principal: Annotated[Principal, Depends(authenticated)]
) -> StoreVerification:
    """Recompute every stream's hash chain; name the first bad event of each broken stream (auditors)."""
    principal.require_role([Role.AUDITOR], "verifying the whole store")
    principal.require_company_wide("verifying the whole store")
    started = time.perf_counter()
    report = await _store(request).verify_all()
    return StoreVerification(
        ok=report.ok,
        streams_checked=report.streams_checked,
        events_checked=report.events_checked,
        seconds=round(time.perf_counter() - started, 3),
        breaks=[Break(**break_json(b)) for b in report.breaks],
    )


@router.get("/checkpoints", response_model=list[CheckpointDocument])
async def list_checkpoints(
    request: Request,
    _: Annotated[Principal, Depends(authenticated)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="Only sequences below it.")] = None,
) -> list[CheckpointDocument]:
    """The signed checkpoints, newest first; 409 if a stored one was altered so that it cannot be read."""
    try:
        found = await checkpoints_of(request.app).list(limit, before)
    except CheckpointError as exc:
        raise _altered(exc) from None
    return [_document(c) for c in found]


@router.get("/checkpoints/latest", response_model=CheckpointDocument)
async def latest_checkpoint(
    request: Request, _: Annotated[Principal, Depends(authenticated)]
) -> CheckpointDocument:
    """The latest signed checkpoint: save it to check the store against later."""
    try:
        latest = await checkpoints_of(request.app).latest()
    except CheckpointError as exc:
        raise _altered(exc) from None
    if latest is None:
        raise ApiError(
            404, NOT_FOUND, "no checkpoint has been published yet; POST /audit/checkpoints publishes one"
        )
    return _document(latest)


@router.get("/checkpoints/{sequence}", response_model=CheckpointDocument)
async def get_checkpoint(
    request: Request,
    sequence: Annotated[int, Path(ge=1, le=2**63 - 1)],
    _: Annotated[Principal, Depends(authenticated)],
) -> CheckpointDocument:
    """One signed checkpoint by its sequence number."""
    try:
        found = await checkpoints_of(request.app).get(sequence)
    except CheckpointError as exc:
        raise _altered(exc) from None
    if found is None:
        raise ApiError(
            404, NOT_FOUND, f"there is no checkpoint {sequence}; GET /audit/checkpoints lists them"
        )
    return _document(found)


@router.get(
    "/checkpoints/{sequence}/extension",
    response_class=Response,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "The extension, JSON Lines."}},
)
async def checkpoint_extension(
    request: Request,
    sequence: Annotated[int, Path(ge=1, le=2**63 - 1)],
    principal: Annotated[Principal, Depends(authenticated)],
    to: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="The later checkpoint (default: the latest).")
    ] = None,
) -> Response:
    """What an auditor needs to prove, on their own machine, that checkpoint ``to`` extends checkpoint
    ``sequence``: the stream heads behind both, the later checkpoint, and every event appended between
    them (`planloop audit consistency KEPT --trusted-key ...` checks it; auditors)."""
    principal.require_role([Role.AUDITOR], "proving the store's history against a checkpoint")
    principal.require_company_wide("proving the store's history against a checkpoint")
    checkpoints = checkpoints_of(request.app)
    try:
        kept = await checkpoints.get(sequence)
        later = await (checkpoints.get(to) if to is not None else checkpoints.latest())
        if kept is None or later is None:
            missing = sequence if kept is None else to
            raise ApiError(
                404, NOT_FOUND, f"there is no checkpoint {missing}; GET /audit/checkpoints lists them"
            )
        if later.sequence < kept.sequence:
            raise ApiError(
                422,
                INVALID_REQUEST,
                f"checkpoint {later.sequence} is older than {kept.sequence}; pass a later one as to=",
            )
        text = await export_extension(checkpoints, kept, later)
    except CheckpointError as exc:
        raise _altered(exc) from None
    return Response(text, media_type="application/x-ndjson")


@router.get("/public-key", response_model=PublicKey)
async def public_key(request: Request, _: Annotated[Principal, Depends(authenticated)]) -> PublicKey:
    """The key that signs checkpoints, and its fingerprint (the key id every checkpoint names); 404 before
    the first checkpoint made the key (reading it never does)."""
    try:
        key = checkpoints_of(request.app).existing_public_key()
    except SigningKeyError as exc:
        raise _key_failure(exc) from None
    if key is None:
        raise ApiError(
            404,
            NOT_FOUND,
            "there is no checkpoint signing key yet: it is made when the first checkpoint is published "
            "(POST /audit/checkpoints, admins)",
        )
    return PublicKey(key_id=fingerprint(key), pem=public_pem(key))


@router.post(
    "/checkpoints",
    response_model=Published,
    responses={201: {"model": Published, "description": "A new checkpoint was signed."}},
)
async def publish_checkpoint(
    request: Request,
    principal: Annotated[Principal, Depends(authenticated)],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Sign a checkpoint of the store now (admins). 201 with the new one; 200 with the latest if nothing
    changed; 409 if the store does not extend the latest checkpoint (nothing is signed then). A plain
    retry signs nothing new unless events came in; with an Idempotency-Key it gets the first answer."""
    principal.require_role([], "publishing a checkpoint")

    async def act(_: str) -> Answer:
        try:
            checkpoint, new = await checkpoints_of(request.app).publish()
        except SigningKeyError as exc:
            raise _key_failure(exc) from None
        except CheckpointRefused as exc:
            raise ApiError(409, STORE_NOT_CONSISTENT, str(exc)) from None
        except CheckpointError as exc:
            raise _altered(exc) from None
        if checkpoint is None:
            raise ApiError(
                409, NOTHING_TO_CHECKPOINT, "the store holds no events yet; there is nothing to sign"
            )
        published = Published(published=new, checkpoint=_document(checkpoint))
        return (201 if new else 200), published.model_dump(mode="json")

    return await once(request, principal, idempotency_key, act)


@router.post("/checkpoints/consistency", response_model=Consistency)
async def check_consistency(
    request: Request, kept: CheckpointDocument, principal: Annotated[Principal, Depends(authenticated)]
) -> Consistency:
    """Check the store against a checkpoint you kept: every stream head it recorded is still there with its
    hash and every chain verifies, or the answer names what was rewritten (auditors)."""
    principal.require_role([Role.AUDITOR], "checking the whole store against a checkpoint")
    principal.require_company_wide("checking the whole store against a checkpoint")
    try:
        # A document without its digest is fine: the digest is recomputed, and only compared when given.
        document: dict[str, Any] = {"checkpoint": kept.checkpoint, "signature": kept.signature}
        if kept.digest is not None:
            document["digest"] = kept.digest
        checkpoint = SignedCheckpoint.from_document(document)
    except CheckpointError as exc:
        raise ApiError(422, INVALID_CHECKPOINT, str(exc)) from None
    try:
        report = await checkpoints_of(request.app).consistency(checkpoint)
    except SigningKeyError as exc:
        raise _key_failure(exc) from None
    except CheckpointError as exc:
        raise _altered(exc) from None
    if report.rewrites or report.breaks:
        log.warning(
            "store does not extend a kept checkpoint",
            sequence=checkpoint.sequence,
            rewrites=[describe_break(r) for r in report.rewrites],
        )
    return Consistency.model_validate(report.as_json())


@router.get(
    "/cycles/{cycle_id}/plans/{unit_id}/bundle",
    response_class=Response,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "The bundle, JSON Lines."}},
)
async def plan_bundle(
    request: Request, cycle_id: str, unit_id: str, principal: Annotated[Principal, Depends(authenticated)]
) -> Response:
    """The plan's history as a self-contained bundle, for `planloop audit verify BUNDLE` (offline)."""
    stream_id = await _plan_stream(request, principal, cycle_id, unit_id)
    try:
        text = await export_bundle(
            checkpoints_of(request.app),
            stream_id,
            cycle_id=cycle_id,
            unit_id=unit_id,
            exported_at=datetime.now(UTC),
        )
    except SigningKeyError as exc:
        raise _key_failure(exc) from None
    except CheckpointError as exc:
        raise _altered(exc) from None
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{cycle_id}-{unit_id}")
    return Response(
        text,
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{safe}.planloop-bundle.jsonl"'},
    )
