"""Outbound integration: the event feed (``GET /events``, long polling) and webhook subscriptions.

Both publish every event of the company, so they need a token without org-unit scopes. Deliveries are
enqueued by the webhook dispatcher and sent by the webhook sender, both in the API process (``background``).
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies' and bodies' annotations.

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, UrlConstraints, field_validator

from domain.cycle import CycleClosed, CycleOpened
from planloop.integration import (
    DeliveryRecord,
    WebhookSubscription,
    create_subscription,
    delete_subscription,
    events_router,
    list_deliveries,
    list_subscriptions,
    set_subscription_active,
)
from planloop.integration.webhooks import target_refusal
from planloop.readmodels.plans import PLAN_EVENT_TYPES

from .auth import Principal, Role, authenticated
from .errors import ERROR_RESPONSES, INVALID_REQUEST, NOT_FOUND, ApiError
from .idempotency import HEADER, Answer, IdempotencyKey, once

FEED_ROLES = frozenset({Role.INTEGRATION, Role.AUDITOR, Role.LEADERSHIP})
WEBHOOK_ROLES = frozenset({Role.INTEGRATION})
#: Every event type a subscription may name.
EVENT_TYPES = frozenset(
    {*PLAN_EVENT_TYPES, CycleOpened.model_fields["type"].default, CycleClosed.model_fields["type"].default}
)


async def feed_reader(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    """Roles integration, auditor, leadership or admin, without org-unit scopes."""
    principal.require_role(FEED_ROLES, "reading the event feed")
    principal.require_company_wide("reading the event feed")
    return principal


async def webhook_admin(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    """Roles integration or admin, without org-unit scopes."""
    principal.require_role(WEBHOOK_ROLES, "managing webhook subscriptions")
    principal.require_company_wide("managing webhook subscriptions")
    return principal


async def webhook_reader(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    """Roles integration, auditor or admin, without org-unit scopes: auditors read, they change nothing."""
    principal.require_role(WEBHOOK_ROLES | {Role.AUDITOR}, "reading webhook subscriptions")
    principal.require_company_wide("reading webhook subscriptions")
    return principal


WebhookAdmin = Annotated[Principal, Depends(webhook_admin)]
WebhookReader = Annotated[Principal, Depends(webhook_reader)]


class SubscriptionRequest(BaseModel):
    """A URL to POST every event (or those of ``event_types``) to, signed with ``secret``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[AnyHttpUrl, UrlConstraints(max_length=2000, allowed_schemes=["http", "https"])]
    event_types: list[str] | None = Field(
        default=None, min_length=1, max_length=200, description="Event types to send; all when omitted."
    )
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=256,
        pattern=r"^[\x21-\x7e]+$",
        description="The shared secret for signatures (printable ASCII); a random one is made when omitted.",
    )

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, types: list[str] | None) -> list[str] | None:
        unknown = sorted(set(types or ()) - EVENT_TYPES)
        if unknown:
            raise ValueError(
                f"unknown event type(s) {', '.join(unknown)}; choose from {', '.join(sorted(EVENT_TYPES))}"
            )
        return types


class SubscriptionView(BaseModel):
    """A subscription; its secret is shown only once, when it is created."""

    id: uuid.UUID
    url: str
    event_types: list[str] | None
    active: bool
    created_at: datetime


class CreatedSubscription(SubscriptionView):
    secret: str


def _view(subscription: WebhookSubscription) -> SubscriptionView:
    return SubscriptionView.model_validate(subscription.model_dump(exclude={"secret"}))


def build_router() -> APIRouter:
    router = APIRouter()
    router.include_router(events_router(dependencies=[Depends(feed_reader)]))
    router.include_router(_webhooks)
    return router


_webhooks = APIRouter(prefix="/webhooks/subscriptions", tags=["webhooks"], responses=ERROR_RESPONSES)


@_webhooks.post("", status_code=201, response_model=CreatedSubscription)
async def subscribe(
    body: SubscriptionRequest,
    request: Request,
    principal: WebhookAdmin,
    idempotency_key: Annotated[
        str | None, Header(alias=HEADER, description="Makes the write safe to retry.")
    ] = None,
) -> Response:
    """Subscribe a URL to the events recorded from now on (the feed serves history). Each delivery is
    signed (``X-Planloop-Signature``) and carries ``X-Planloop-Event-Id`` to deduplicate on. Roles:
    integration, admin."""

    if not request.app.state.settings.webhook_private_targets:
        refusal = target_refusal(str(body.url))
        if refusal is not None:
            raise ApiError(422, INVALID_REQUEST, f"webhook url {body.url}: {refusal}")

    async def act(_: str) -> tuple[int, Any]:
        try:
            created = await create_subscription(
                request.app.state.store.pool,
                request.app.state.sealer,
                str(body.url),
                secret=body.secret,
                event_types=body.event_types,
            )
        except ValueError as err:
            raise ApiError(422, INVALID_REQUEST, str(err)) from None
        return 201, CreatedSubscription.model_validate(created.model_dump()).model_dump(mode="json")

    return await once(request, principal, idempotency_key, act, body)


@_webhooks.get("", response_model=list[SubscriptionView])
async def subscriptions(request: Request, principal: WebhookReader) -> list[SubscriptionView]:
    """Every subscription, oldest first (without secrets). Roles: integration, auditor, admin."""
    return [_view(s) for s in await list_subscriptions(request.app.state.store.pool)]


def _no_subscription(subscription_id: uuid.UUID) -> ApiError:
    return ApiError(
        404,
        NOT_FOUND,
        f"there is no webhook subscription {subscription_id}; GET /webhooks/subscriptions lists them",
    )


async def _set_active(request: Request, subscription_id: uuid.UUID, active: bool) -> Answer:
    changed = await set_subscription_active(request.app.state.store.pool, subscription_id, active)
    if changed is None:
        raise _no_subscription(subscription_id)
    return 200, _view(changed).model_dump(mode="json")


# Pausing, resuming and deleting set a state, so a plain retry is harmless; with an Idempotency-Key a retry
# also gets the first answer (a repeated DELETE its 204, not a 404).


@_webhooks.post("/{subscription_id}/pause", response_model=SubscriptionView)
async def pause(
    subscription_id: uuid.UUID,
    request: Request,
    principal: WebhookAdmin,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Pause deliveries: what is pending, and the events recorded while paused, wait in the queue until
    it resumes. Roles: integration, admin."""
    return await once(
        request, principal, idempotency_key, lambda _: _set_active(request, subscription_id, False)
    )


@_webhooks.post("/{subscription_id}/resume", response_model=SubscriptionView)
async def resume(
    subscription_id: uuid.UUID,
    request: Request,
    principal: WebhookAdmin,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Resume a paused subscription; what waited is sent. Roles: integration, admin."""
    return await once(
        request, principal, idempotency_key, lambda _: _set_active(request, subscription_id, True)
    )


@_webhooks.delete("/{subscription_id}", status_code=204)
async def unsubscribe(
    subscription_id: uuid.UUID,
    request: Request,
    principal: WebhookAdmin,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Delete the subscription with its deliveries: what is pending is never sent. (Pause it instead to
    keep what waits.) Roles: integration, admin."""

    async def act(_: str) -> Answer:
        if not await delete_subscription(request.app.state.store.pool, subscription_id):
            raise _no_subscription(subscription_id)
        return 204, None

    return await once(request, principal, idempotency_key, act)


class Deliveries(BaseModel):
    """A subscription's latest deliveries, newest first, and how many it has in each status."""

    subscription_id: uuid.UUID
    counts: dict[str, int]
    deliveries: list[DeliveryRecord]


@_webhooks.get("/{subscription_id}/deliveries", response_model=Deliveries)
async def deliveries(
    subscription_id: uuid.UUID,
    request: Request,
    principal: WebhookReader,
    status: Annotated[
        Literal["pending", "delivered", "failed"] | None, Query(description="Only deliveries in this status.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Most deliveries listed.")] = 50,
) -> Deliveries:
    """The subscription's deliveries: each event's status, attempts, next attempt and last error. Roles:
    integration, auditor, admin."""
    listed = await list_deliveries(request.app.state.store.pool, subscription_id, status, limit)
    if listed is None:
        raise _no_subscription(subscription_id)
    found, counts = listed
    return Deliveries(subscription_id=subscription_id, counts=counts, deliveries=found)
