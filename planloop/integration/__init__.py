"""Talking to other systems: the outbound event feed (long-polling) and webhooks (out and in)."""

from planloop.integration.feed import (
    FeedEvent,
    FeedNotifier,
    FeedPage,
    events_router,
    feed_event,
    read_feed,
)
from planloop.integration.webhooks import (
    DeliveryRecord,
    SignatureError,
    WebhookDispatcher,
    WebhookSender,
    WebhookSubscription,
    create_subscription,
    delete_subscription,
    list_deliveries,
    list_subscriptions,
    set_subscription_active,
    sign,
    verify_signature,
)

__all__ = [
    "DeliveryRecord",
    "FeedEvent",
    "FeedNotifier",
    "FeedPage",
    "SignatureError",
    "WebhookDispatcher",
    "WebhookSender",
    "WebhookSubscription",
    "create_subscription",
    "delete_subscription",
    "events_router",
    "feed_event",
    "list_deliveries",
    "list_subscriptions",
    "read_feed",
    "set_subscription_active",
    "sign",
    "verify_signature",
]
