"""A plan's history through the API: every stored event with who acted and on whose behalf, when, from
where, why, and for decisions the exact revision they were bound to; filters narrow it and refuse nonsense."""

from __future__ import annotations

from typing import Any

import httpx

from eventstore import EventStore
from planloop.api.auth import Role
from tests.api.conftest import MakeToken
from tests.audit.conftest import AUTHOR, DELEGATE, Recorded

FIELDS = {
    "version",
    "position",
    "event_id",
    "type",
    "schema_version",
    "recorded_at",
    "at",
    "actor",
    "on_behalf_of",
    "source",
    "request_id",
    "correlation_id",
    "workflow_run_id",
    "reason",
    "revision",
    "content_hash",
    "summary",
}


async def history(
    http: httpx.AsyncClient, recorded: Recorded, headers: Any, **params: Any
) -> list[dict[str, Any]]:
    path = f"/audit/cycles/{recorded.cycle_id}/plans/{recorded.unit_id}/history"
    answer = await http.get(path, params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()
    return entries


def of_type(entries: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["type"] == type_]


async def test_the_history_shows_every_event_with_who_when_why_and_the_revision_decided_on(
    recorded: Recorded, store: EventStore, http: httpx.AsyncClient, auditor: Any
) -> None:
    entries = await history(http, recorded, auditor)
    stored = await store.read_stream(recorded.stream_id)
    assert [e["event_id"] for e in entries] == [str(s.event_id) for s in stored]
    assert [e["version"] for e in entries] == list(range(1, len(stored) + 1))
    assert all(set(e) == FIELDS and e["summary"] for e in entries)
    opened = entries[0]
    assert (opened["type"], opened["source"], opened["actor"]) == ("PlanOpened", "cycle", "planning-office")
    commands = entries[1:]
    assert {e["source"] for e in commands} == {"api"} and all(e["request_id"] for e in commands)
    assert {e["workflow_run_id"] for e in entries} == {stored[-1].metadata["run_id"]}

    # Why: a revision's reason, a pushback's comment, an off-track month's explanation.
    revisions = of_type(entries, "RevisionRecorded")
    assert [(e["revision"], e["actor"], e["reason"]) for e in revisions] == [
        (1, AUTHOR, "first draft"),
        (2, AUTHOR, "agreed in the regional call"),
        (3, AUTHOR, "faster commissioning"),
    ]
    assert "counter-proposal of eu-cfo" in revisions[1]["summary"]
    (pushback,) = of_type(entries, "ChangesRequested")
    assert pushback["reason"].startswith("Stretch the revenue") and pushback["actor"] == "eu-cfo"
    (explained,) = of_type(entries, "DeviationExplained")
    assert explained["reason"] == "A key account postponed its order to February."
    (off_track,) = of_type(entries, "DeviationOpened")
    assert "off track" in off_track["summary"] and off_track["version"] < explained["version"]

    # Decisions carry the revision and content hash they were bound to: the pushback revision 1's,
    # every approval and the sign-off revision 3's (not the latest draft's at some other time).
    assert (pushback["revision"], pushback["content_hash"]) == (1, recorded.hashes[1])
    approvals = of_type(entries, "ApprovalRecorded")
    assert len(approvals) == 4
    assert {(e["revision"], e["content_hash"]) for e in approvals} == {(3, recorded.hashes[3])}
    (signed,) = of_type(entries, "PlanSignedOff")
    assert (signed["revision"], signed["content_hash"]) == (3, recorded.hashes[3])
    assert recorded.hashes[3] != recorded.hashes[1]
    assert revisions[2]["content_hash"] == recorded.hashes[3]

    # Delegation: the delegate acted, for eu-cfo's seat; both are shown.
    (delegation,) = of_type(entries, "ApprovalDelegated")
    assert delegation["actor"] == "eu-cfo" and DELEGATE in delegation["summary"]
    by_delegate = next(e for e in approvals if e["actor"] == DELEGATE)
    assert by_delegate["on_behalf_of"] == "eu-cfo"
    assert f"{DELEGATE} for eu-cfo approved revision 3" in by_delegate["summary"]
    assert [e["on_behalf_of"] for e in approvals if e["actor"] != DELEGATE] == [None, None, None]

    # Business time and store time: each decision's time comes before the store wrote it.
    assert all(e["at"] <= e["recorded_at"] for e in entries)


async def test_filters_narrow_the_history(recorded: Recorded, http: httpx.AsyncClient, auditor: Any) -> None:
    everything = await history(http, recorded, auditor)

    # An actor's events, including those done on their behalf.
    cfo = await history(http, recorded, auditor, actor="eu-cfo")
    assert [e["type"] for e in cfo] == ["ChangesRequested", "ApprovalDelegated", "ApprovalRecorded"]
    assert all("eu-cfo" in (e["actor"], e["on_behalf_of"]) for e in cfo)
    assert cfo[-1]["actor"] == DELEGATE
    delegate = await history(http, recorded, auditor, actor=DELEGATE)
    assert [(e["type"], e["on_behalf_of"]) for e in delegate] == [("ApprovalRecorded", "eu-cfo")]
    coo = await history(http, recorded, auditor, actor="eu-coo")
    assert [e["type"] for e in coo] == ["ApprovalRecorded", "GatePassed"]

    # Types: repeated or comma-separated; combined with an actor.
    decisions = await history(http, recorded, auditor, type="ApprovalRecorded,PlanSignedOff")
    assert [e["type"] for e in decisions] == ["ApprovalRecorded"] * 4 + ["PlanSignedOff"]
    repeated = await history(http, recorded, auditor, type=["ApprovalRecorded", "PlanSignedOff"])
    assert repeated == decisions
    both = await history(http, recorded, auditor, type="ApprovalRecorded", actor="eu-cfo")
    assert [e["actor"] for e in both] == [DELEGATE]

    # Time (the store's recorded_at, inclusive) and version ranges.
    drafted, signed = recorded.moment("drafted"), recorded.moment("signed off")
    early = await history(http, recorded, auditor, until=drafted.wall_time.isoformat())
    assert [e["version"] for e in early] == list(range(1, drafted.version + 1))
    late = await history(http, recorded, auditor, since=signed.wall_time.isoformat())
    assert [e["version"] for e in late] == list(range(signed.version + 1, len(everything) + 1))
    assert late[0]["type"] == "ExecutionPlanningStarted"
    window = await history(
        http,
        recorded,
        auditor,
        since=drafted.wall_time.isoformat(),
        until=signed.wall_time.isoformat(),
        type="RevisionRecorded",
    )
    assert [e["revision"] for e in window] == [2, 3]
    middle = await history(http, recorded, auditor, from_version=3, to_version=5)
    assert [e["version"] for e in middle] == [3, 4, 5]
    assert await history(http, recorded, auditor, actor="nobody") == []


async def test_filters_that_cannot_be_meant_are_refused_with_what_to_do(
    recorded: Recorded, http: httpx.AsyncClient, auditor: Any, make_token: MakeToken
) -> None:
    path = f"/audit/cycles/{recorded.cycle_id}/plans/{recorded.unit_id}/history"
    last = recorded.moments[-1]

    async def refused(params: dict[str, Any]) -> tuple[int, str, str]:
        answer = await http.get(path, params=params, headers=auditor)
        return answer.status_code, answer.json()["code"], answer.json()["message"]

    status, code, message = await refused({"type": "Approved"})
    assert (status, code) == (422, "unknown_event_type") and "ApprovalRecorded" in message
    status, code, message = await refused({"since": "2027-01-01T00:00:00"})
    assert (status, code) == (422, "time_zone_missing") and "add one" in message
    status, code, message = await refused(
        {"since": last.wall_time.isoformat(), "until": recorded.moments[0].wall_time.isoformat()}
    )
    assert (status, code) == (422, "invalid_range") and "swap them" in message
    status, code, message = await refused({"from_version": 5, "to_version": 3})
    assert (status, code) == (422, "invalid_range")
    status, code, message = await refused({"to_version": last.version + 1})
    assert (status, code) == (422, "version_out_of_range") and f"1 to {last.version}" in message
    status, code, _ = await refused({"from_version": "three"})
    assert (status, code) == (422, "invalid_request")
    unknown = await http.get(f"/audit/cycles/{recorded.cycle_id}/plans/XX/history", headers=auditor)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "plan_not_found")

    # Every role reads within its scopes: a planner of the Americas may not read Germany's history.
    americas = await make_token("am-head", Role.PLANNER, scopes=("AMERICAS",))
    outside = await http.get(path, headers=americas)
    assert outside.status_code == 403 and "outside" in outside.json()["message"]
    europe = await make_token("eu-reader", Role.CSF_OWNER, scopes=("EU",))
    assert (await http.get(path, headers=europe)).status_code == 200


async def test_every_read_of_a_plan_refuses_a_token_scoped_to_another_unit(
    recorded: Recorded, http: httpx.AsyncClient, make_token: MakeToken
) -> None:
    base = f"/audit/cycles/{recorded.cycle_id}/plans/{recorded.unit_id}"
    at = recorded.moments[-1].wall_time.isoformat()
    americas = await make_token("am-auditor", Role.AUDITOR, scopes=("AMERICAS",))
    for read, params in (
        ("as-of", {"version": 1}),
        ("diff-at", {"from": at, "to": at}),
        ("workflow-replay", {}),
    ):
        outside = await http.get(f"{base}/{read}", params=params, headers=americas)
        assert outside.status_code == 403 and "outside" in outside.json()["message"], read
