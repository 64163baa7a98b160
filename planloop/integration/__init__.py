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
    SignatureError,
    WebhookDispatcher,
    WebhookSender,
    WebhookSubscription,
    create_subscription,
    list_subscriptions,
    set_subscription_active,
    sign,
    verify_signature,
)

__all__ = [
    "FeedEvent",
    "FeedNotifier",
    "FeedPage",
    "SignatureError",
    "WebhookDispatcher",
    "WebhookSender",
    "WebhookSubscription",
    "create_subscription",
    "events_router",
    "feed_event",
    "list_subscriptions",
    "read_feed",
    "set_subscription_active",
    "sign",
    "verify_signature",
]
