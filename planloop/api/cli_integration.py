"""Integration from the terminal: `events` (the feed: one page, or following it with long polls),
`webhook ...` (outbound subscriptions and their deliveries) and `inbound ...` (systems that post signed
actuals)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from planloop.errors import PlanloopError

from .cli_client import (
    ApiUrlOption,
    IdempotencyOption,
    JsonOption,
    TokenOption,
    add_data_row,
    answer,
    api_client,
    ask,
    call,
    err,
    idempotency,
    out,
    print_json,
    short_time,
    user_errors,
)

webhook_app = typer.Typer(
    help="Outbound webhooks: subscribe a URL to events, list, pause, resume, delete, see deliveries.",
    no_args_is_help=True,
)
inbound_app = typer.Typer(
    help="Inbound webhooks: register the systems that post signed actuals (admins).", no_args_is_help=True
)

SubscriptionArgument = Annotated[str, typer.Argument(help="The subscription's id (`webhook list` shows it).")]

# The API holds a long poll at most this long; the client waits a little longer for the answer.
MAX_WAIT = 30.0


# -- the feed ----------------------------------------------------------------------------------------------


def _event_row(table: Table, event: dict[str, Any]) -> None:
    actor = (event.get("metadata") or {}).get("actor") or event["data"].get("actor") or "-"
    add_data_row(
        table,
        str(event["position"]),
        short_time(event["recorded_at"]),
        event["stream_id"],
        event["type"],
        str(actor),
    )


def _events_table(events: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in ("position", "recorded", "stream", "type", "actor"):
        table.add_column(column, no_wrap=column != "stream")
    for event in events:
        _event_row(table, event)
    return table


@user_errors
def events(
    after: Annotated[
        str | None, typer.Option("--after", help="Start after this cursor (a previous run printed it).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Most events in one page.")] = 100,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep following with long polls until Ctrl-C (or --count).")
    ] = False,
    wait: Annotated[
        float, typer.Option("--wait", min=0, max=MAX_WAIT, help="Seconds each poll waits for a new event.")
    ] = MAX_WAIT,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="With --follow: stop after this many events.")
    ] = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read the event feed: one page from --after (the start by default), or --follow it. The cursor to
    resume from is printed at the end (on stderr), also on Ctrl-C. With --json: one event per line, then
    {"next_cursor": ...}."""
    cursor = after
    seen = 0
    with api_client(api_url, token, timeout=MAX_WAIT + 30) as client:
        try:
            while True:
                params: dict[str, Any] = {"limit": limit if count is None else min(limit, count - seen)}
                if cursor:
                    params["after"] = cursor
                if follow:
                    params["wait"] = wait
                page = call(client, "GET", "/events", params=params)
                cursor = page["next_cursor"]
                seen += len(page["events"])
                _show_page(page["events"], as_json, follow)
                if not follow or (count is not None and seen >= count):
                    break
                if not page["events"] and wait == 0:
                    time.sleep(1)  # --wait 0 would otherwise ask as fast as the API answers
        except KeyboardInterrupt:
            pass
        finally:
            if cursor is not None:
                _print_cursor(cursor, as_json)


def _show_page(events: list[dict[str, Any]], as_json: bool, follow: bool) -> None:
    if as_json:
        for event in events:
            print_json(event)
    elif follow:
        for event in events:  # one line per event as it comes, so a follower can be piped and grepped
            actor = (event.get("metadata") or {}).get("actor") or "-"
            out.print(
                f"{event['position']:>8}  {short_time(event['recorded_at'])}  {escape(event['stream_id'])}  "
                f"[bold]{escape(event['type'])}[/]  {escape(str(actor))}",
                highlight=False,
            )
    elif events:
        out.print(_events_table(events, f"{len(events)} event(s)"))
    else:
        out.print("no new events")


def _print_cursor(cursor: str, as_json: bool) -> None:
    if as_json:
        print_json({"next_cursor": cursor})
    else:
        err.print(f"resume with: planloop events --after {escape(cursor)}", highlight=False, soft_wrap=True)


# -- outbound webhooks ------------------------------------------------------------------------------------


def _subscriptions_table(subscriptions: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(subscriptions)} webhook subscription(s)")
    for column in ("id", "url", "events", "state", "since"):
        table.add_column(column, no_wrap=column == "id", overflow="fold")
    for s in subscriptions:
        add_data_row(
            table,
            s["id"],
            s["url"],
            ", ".join(s["event_types"]) if s["event_types"] else "all",
            Text("active", style="green") if s["active"] else Text("paused", style="yellow"),
            short_time(s["created_at"]),
        )
    return table


@webhook_app.command("subscribe")
@user_errors
def subscribe(
    url: Annotated[str, typer.Argument(help="Where to POST each event (http or https).")],
    event_type: Annotated[
        list[str] | None,
        typer.Option("--event-type", help="Only this event type (repeatable). Default: all."),
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret", help="The signing secret (16+ printable characters). Default: a random one."
        ),
    ] = None,
    idempotency_key: IdempotencyOption = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Subscribe a URL to the events recorded from now on; prints the signing secret (shown only now)."""
    body: dict[str, Any] = {"url": url}
    if event_type:
        body["event_types"] = event_type
    if secret:
        body["secret"] = secret
    created = ask(
        api_url, token, "POST", "/webhooks/subscriptions", json=body, headers=idempotency(idempotency_key)
    )
    answer(
        created,
        as_json,
        f"subscribed [bold]{escape(created['url'])}[/] as {escape(created['id'])}",
        f"signing secret (shown only now): {escape(created['secret'])}",
    )


@webhook_app.command("list")
@user_errors
def list_subscriptions(
    api_url: ApiUrlOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Every subscription, oldest first (without secrets)."""
    subscriptions = ask(api_url, token, "GET", "/webhooks/subscriptions")
    answer(subscriptions, as_json, _subscriptions_table(subscriptions))


def _set_active(
    subscription_id: str, action: str, api_url: str | None, token: str | None, as_json: bool
) -> None:
    changed = ask(api_url, token, "POST", f"/webhooks/subscriptions/{subscription_id}/{action}")
    state = "active" if changed["active"] else "paused (its deliveries wait in the queue)"
    answer(changed, as_json, f"subscription {escape(changed['id'])} ({escape(changed['url'])}) is {state}")


@webhook_app.command("pause")
@user_errors
def pause(
    subscription_id: SubscriptionArgument,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pause deliveries: what is pending, and what happens meanwhile, waits until `webhook resume`."""
    _set_active(subscription_id, "pause", api_url, token, as_json)


@webhook_app.command("resume")
@user_errors
def resume(
    subscription_id: SubscriptionArgument,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Resume a paused subscription; what waited is sent."""
    _set_active(subscription_id, "resume", api_url, token, as_json)


@webhook_app.command("delete")
@user_errors
def delete(
    subscription_id: SubscriptionArgument,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a subscription and its deliveries (pending ones are never sent; `webhook pause` keeps them)."""
    ask(api_url, token, "DELETE", f"/webhooks/subscriptions/{subscription_id}")
    answer({"deleted": subscription_id}, as_json, f"deleted subscription {escape(subscription_id)}")


@webhook_app.command("deliveries")
@user_errors
def deliveries(
    subscription_id: SubscriptionArgument,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only deliveries in this status: pending, delivered, failed."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="Most deliveries listed.")] = 50,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """A subscription's latest deliveries, newest first: status, attempts, next attempt, last error."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    found = ask(api_url, token, "GET", f"/webhooks/subscriptions/{subscription_id}/deliveries", params=params)
    if as_json:
        print_json(found)
        return
    counts = ", ".join(f"{n} {s}" for s, n in sorted(found["counts"].items())) or "none yet"
    table = Table(title=escape(f"deliveries of {subscription_id} ({counts})"))
    for column in ("event", "type", "status", "attempts", "next attempt", "delivered", "last error"):
        table.add_column(column, overflow="fold")
    styles = {"delivered": "green", "pending": "yellow", "failed": "red"}
    for d in found["deliveries"]:
        add_data_row(
            table,
            d["event_id"][:8],
            d["event_type"],
            Text(d["status"], style=styles.get(d["status"], "")),
            str(d["attempts"]),
            short_time(d["next_attempt_at"]) if d["status"] == "pending" else "-",
            short_time(d["delivered_at"]),
            d["last_error"] or "-",
        )
    out.print(table)


# -- inbound webhooks -------------------------------------------------------------------------------------


@inbound_app.command("register")
@user_errors
def register_source(
    source: Annotated[str, typer.Argument(help="A name for the system, e.g. erp-sap.")],
    secret: Annotated[
        str | None,
        typer.Option("--secret", help="The shared secret (16+ characters). Default: a random one."),
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Recorded on its events. Default: inbound:SOURCE.")
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="An org unit it may post for (repeatable). Default: all."),
    ] = None,
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a system that posts signed actuals (or replace its secret); prints the secret once."""
    body: dict[str, Any] = {"source": source, "scopes": scope or []}
    if secret:
        body["secret"] = secret
    if actor:
        body["actor"] = actor
    registered = ask(api_url, token, "POST", "/inbound/sources", json=body)
    answer(
        registered,
        as_json,
        f"registered [bold]{escape(registered['source'])}[/]: it posts to {escape(registered['url'])}",
        f"shared secret (shown only now): {escape(registered['secret'])}",
    )


@inbound_app.command("list")
@user_errors
def list_sources(
    api_url: ApiUrlOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """The registered inbound sources (without their secrets)."""
    sources = ask(api_url, token, "GET", "/inbound/sources")
    if as_json:
        print_json(sources)
        return
    table = Table(title=f"{len(sources)} inbound source(s)")
    for column in ("source", "actor", "scopes", "registered by", "since"):
        table.add_column(column)
    for s in sources:
        add_data_row(
            table,
            s["source"],
            s["actor"],
            ", ".join(s["scopes"]) or "all",
            s["created_by"],
            short_time(s["created_at"]),
        )
    out.print(table)


@inbound_app.command("revoke")
@user_errors
def revoke_source(
    source: Annotated[str, typer.Argument(help="The source to revoke.")],
    api_url: ApiUrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a source: its requests are refused from now on."""
    if not source.strip():
        raise PlanloopError("name the source to revoke (`planloop inbound list` shows them)")
    ask(api_url, token, "DELETE", f"/inbound/sources/{source}")
    answer({"revoked": source}, as_json, f"revoked inbound source {escape(source)}")
