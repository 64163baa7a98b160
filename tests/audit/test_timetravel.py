"""Time travel: the plan as of a stream version or a moment is exactly the state the plan's workflow reported
then; the diff between the plan at two moments names the revision current at each and every other part of
the plan that changed."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import httpx

from eventstore import EventStore
from planloop.api.audit_history import plan_view
from planloop.audit import timetravel
from tests.audit.conftest import Recorded


def as_json(model: Any) -> Any:
    return model.model_dump(mode="json")


async def test_as_of_reconstruction_matches_the_state_the_workflow_reported_at_that_time(
    recorded: Recorded, store: EventStore, http: httpx.AsyncClient, auditor: dict[str, str]
) -> None:
    path = f"/audit/cycles/{recorded.cycle_id}/plans/{recorded.unit_id}/as-of"
    assert len({m.version for m in recorded.moments}) == len(recorded.moments) == 10
    for moment in recorded.moments:
        reported = as_json(moment.state)
        assert moment.state.version == moment.version, moment.step

        by_version = await timetravel.plan_at_version(
            store, recorded.cycle_id, recorded.unit_id, moment.version
        )
        assert as_json(by_version.state) == reported, f"as of version {moment.version} ({moment.step})"
        by_time = await timetravel.plan_at_time(store, recorded.cycle_id, recorded.unit_id, moment.wall_time)
        assert by_time.version == moment.version, moment.step
        assert as_json(by_time.state) == reported, f"as of {moment.wall_time} ({moment.step})"
        assert by_time.recorded_at <= moment.wall_time

        # The API answers the same, as the plan view of the reported state.
        view = as_json(plan_view(moment.state))
        answer = await http.get(path, params={"version": moment.version}, headers=auditor)
        assert answer.status_code == 200, answer.text
        assert answer.json()["plan"] == view and answer.json()["version"] == moment.version
        answer = await http.get(path, params={"at": moment.wall_time.isoformat()}, headers=auditor)
        assert answer.status_code == 200, answer.text
        shown = answer.json()
        assert shown["plan"] == view and shown["version"] == moment.version, moment.step
        # ... and the whole state the workflow held, not only the plan view: CSFs, actuals, deviations.
        assert shown["state"] == reported, moment.step
        assert shown["recorded_at"] == by_time.recorded_at.isoformat().replace("+00:00", "Z")

    phases = [m.state.phase for m in recorded.moments]
    assert [str(p) for p in phases] == [
        "drafting",
        "drafting",
        "changes_requested",
        "changes_requested",
        "changes_requested",
        "in_review",
        "approved",
        "executing",
        "executing",
        "executing",
    ]


async def test_the_diff_between_two_moments_names_the_revision_current_at_each(
    recorded: Recorded, http: httpx.AsyncClient, auditor: dict[str, str]
) -> None:
    path = f"/audit/cycles/{recorded.cycle_id}/plans/{recorded.unit_id}/diff-at"
    drafted, signed = recorded.moment("drafted"), recorded.moment("signed off")
    answer = await http.get(
        path,
        params={"from": drafted.wall_time.isoformat(), "to": signed.wall_time.isoformat()},
        headers=auditor,
    )
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert (shown["from_revision"], shown["to_revision"]) == (1, 3)
    assert shown["from_moment"]["stream_version"] == drafted.version
    assert shown["to_moment"]["content_hash"] == recorded.hashes[3]
    assert shown["to_moment"]["reason"] == "faster commissioning"
    diff = shown["diff"]
    assert {"goals", "budget", "programs", "choices.how_to_win"} <= set(diff["changed_fields"])
    assert float(diff["target_changes"][0]["change_pct"]) == 10 and diff["programs_dropped"] == ["P-WEBINAR"]

    # The same revision at both moments: nothing changed.
    same = await http.get(
        path,
        params={"from": signed.wall_time.isoformat(), "to": recorded.moments[-1].wall_time.isoformat()},
        headers=auditor,
    )
    assert same.json()["diff"]["changed_fields"] == [] and same.json()["to_revision"] == 3
    # The content is the same, but the rest of the plan moved on: execution, an off-track month explained.
    changes = {c["field"]: c for c in same.json()["changes"]}
    assert (changes["phase"]["before"], changes["phase"]["after"]) == ("approved", "executing")
    last = recorded.moments[-1].state
    assert [c["csf_id"] for c in changes["csfs"]["added"]] == [c.csf_id for c in last.csfs]
    assert len(changes["actuals"]["added"]) == len(last.actuals) > 0
    [deviation] = changes["deviations"]["added"]
    assert deviation["explanation"] == last.deviations[0].explanation
    assert "revisions" not in changes and "decisions" not in changes  # signed off before: no new decision
    # From the draft to signed off: the gate decisions made in between.
    assert len(shown["changes"]) > 0
    decided = {c["field"]: c for c in shown["changes"]}["decisions"]["added"]
    assert len(decided) == len(signed.state.decisions) - len(drafted.state.decisions) > 0

    # A revision diff by number stays the plans API's (the CLI uses both).
    by_number = await http.get(
        f"/cycles/{recorded.cycle_id}/plans/{recorded.unit_id}/diff",
        params={"from": 1, "to": 3},
        headers=auditor,
    )
    assert by_number.json()["diff"] == diff


async def test_time_travel_questions_that_cannot_be_answered_are_clear_4xx(
    recorded: Recorded, store: EventStore, http: httpx.AsyncClient, auditor: dict[str, str]
) -> None:
    base = f"/audit/cycles/{recorded.cycle_id}/plans/{recorded.unit_id}"
    opened, last = recorded.moments[0], recorded.moments[-1]

    async def refused(path: str, params: dict[str, Any]) -> tuple[int, str, str]:
        answer = await http.get(f"{base}/{path}", params=params, headers=auditor)
        body = answer.json()
        return answer.status_code, body["code"], body["message"]

    status, code, message = await refused("as-of", {"at": "2027-03-31T18:00:00"})
    assert (status, code) == (422, "time_zone_missing") and "2027-03-31T18:00:00Z" in message
    status, code, message = await refused("as-of", {"at": "last tuesday"})
    assert (status, code) == (422, "invalid_time") and "ISO 8601" in message
    status, code, message = await refused("as-of", {"version": last.version + 1})
    assert (status, code) == (422, "version_out_of_range")
    assert f"versions 1 to {last.version}" in message
    status, code, _ = await refused("as-of", {"version": 0})
    assert (status, code) == (422, "version_out_of_range")
    status, code, message = await refused("as-of", {})
    assert (status, code) == (422, "invalid_request") and "either at=TIME" in message
    before = (opened.wall_time - timedelta(days=1)).isoformat()
    status, code, message = await refused("as-of", {"at": before})
    assert (status, code) == (404, "plan_not_yet_opened") and "opened at" in message
    status, code, message = await refused(
        "diff-at", {"from": last.wall_time.isoformat(), "to": opened.wall_time.isoformat()}
    )
    assert (status, code) == (422, "invalid_range") and "swap them" in message
    status, code, message = await refused(
        "diff-at", {"from": opened.wall_time.isoformat(), "to": last.wall_time.isoformat()}
    )
    assert (status, code) == (404, "no_revision_at_time") and "no revision yet" in message
    unknown = await http.get(
        f"/audit/cycles/{recorded.cycle_id}/plans/XX/as-of", params={"version": 1}, headers=auditor
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "plan_not_found")

    # A "+" offset that arrived unencoded (as a space) still reads as the moment meant.
    berlin_summer = timezone(timedelta(hours=2))
    unencoded = last.wall_time.astimezone(berlin_summer).isoformat().replace("+", " ")
    answer = await http.get(f"{base}/as-of", params={"at": unencoded}, headers=auditor)
    assert answer.status_code == 200 and answer.json()["version"] == last.version

    # Asking changed nothing.
    assert await store.stream_version(recorded.stream_id) == last.version
