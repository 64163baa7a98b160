"""Bulk import of monthly actuals through the HTTP API: 2,000 rows across eight plans, a few bad rows (each
reported with its line and reason, their plans untouched, the others fully applied, each in one step), and
retries that never record a row twice; a plan that changes between the check and the send records none of
its rows."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from eventstore import EventStore
from planloop.api.actuals import ActualsImport, parse_csv
from planloop.api.auth import Principal, Role
from tests.api import executing
from tests.api.conftest import MakeToken

UNITS = [f"C{i}" for i in range(1, 9)]
CSFS = 6  # revenue and six CSFs, 36 months, 8 plans: 2,016 rows
MONTHS = 36


async def recorded(store: EventStore, cycle_id: str, unit: str) -> int:
    return sum(e.type == "ActualRecorded" for e in await store.read_stream(f"plan:{cycle_id}:{unit}"))


async def test_a_2000_row_csv_applies_every_valid_plan_and_reports_every_bad_row(
    http: httpx.AsyncClient,
    admin: Any,
    make_token: MakeToken,
    dev_server_env: WorkflowEnvironment,
    store: EventStore,
) -> None:
    started = time.monotonic()
    cycle_id, months = await executing.executing_cycle(
        http, admin, dev_server_env.client, UNITS, CSFS, MONTHS
    )
    setup = time.monotonic() - started
    table = executing.rows(UNITS, months, CSFS)
    per_plan = (CSFS + 1) * len(months)
    line = {id(r): i + 2 for i, r in enumerate(table)}  # the header is line 1

    def first(unit: str, measure: str, month: str = months[0]) -> dict[str, str]:
        return next(r for r in table if (r["unit"], r["measure"], r["month"]) == (unit, measure, month))

    first("C2", "K04")["measure"] = "K99"  # no such CSF
    first("C3", "K02")["month"] = "2027-13"  # no such month
    first("C3", "K03")["value"] = "12.5x"  # not a number
    table.append(dict(first("C4", "K01")))  # the same month of a measure twice
    first("C6", "revenue")["currency"] = "USD"  # the plan tracks revenue in EUR
    first("C7", "K05")["month"] = "2020-01"  # before the execution period
    table.append({"unit": "ZZ", "measure": "revenue", "month": months[0], "value": "1", "currency": "EUR"})
    line.update({id(table[-2]): len(table), id(table[-1]): len(table) + 1})
    # C5's revenue of the first month is recorded by hand before the import: the file's row clashes.
    erp = await make_token("erp", Role.INTEGRATION)
    by_hand = await http.post(
        f"/cycles/{cycle_id}/plans/C5/commands/RecordActual",
        json={"measure": "revenue", "month": months[0], "value": "5", "currency": "EUR", "source": "manual"},
        headers=erp,
    )
    assert by_hand.status_code == 200, by_hand.text
    before = {u: await store.stream_version(f"plan:{cycle_id}:{u}") for u in UNITS}

    csv_text = executing.to_csv(table)
    assert len(table) >= 2000
    headers = {**erp, "Idempotency-Key": "erp-2027-batch-1", "Content-Type": "text/csv"}
    importing = time.monotonic()
    answer = await http.post(f"/cycles/{cycle_id}/actuals/import", content=csv_text, headers=headers)
    took = time.monotonic() - importing
    assert answer.status_code == 207, answer.text
    report = answer.json()

    expected = {
        (line[id(first("C2", "K99"))], "C2", "unknown_measure"),
        (line[id(first("C3", "K02", "2027-13"))], "C3", "invalid_month"),
        (line[id(first("C3", "K03"))], "C3", "invalid_value"),
        (len(table), "C4", "duplicate_row"),
        (line[id(first("C5", "revenue"))], "C5", "actual_exists"),
        (len(table) + 1, "ZZ", "unknown_unit"),
        (line[id(first("C6", "revenue"))], "C6", "currency_mismatch"),
        (line[id(first("C7", "K05", "2020-01"))], "C7", "month_outside_period"),
    }
    got = {(e["line"], e["unit"], e["code"]) for e in report["errors"]}
    assert got == expected, (got - expected, expected - got, f"import {took:.1f} s, setup {setup:.1f} s")
    assert all(e["reason"] for e in report["errors"])
    duplicate = next(e for e in report["errors"] if e["code"] == "duplicate_row")
    assert f"duplicate of line {line[id(first('C4', 'K01'))]}" in duplicate["reason"]
    plans = {p["unit_id"]: p for p in report["plans"]}
    for unit in ("C1", "C8"):
        assert (plans[unit]["status"], plans[unit]["applied"]) == ("applied", per_plan)
        assert await recorded(store, cycle_id, unit) == per_plan
    for unit in ("C2", "C3", "C4", "C5", "C6", "C7"):
        assert (plans[unit]["status"], plans[unit]["applied"]) == ("refused", 0)
        assert await store.stream_version(f"plan:{cycle_id}:{unit}") == before[unit], f"{unit} was touched"
    assert report["applied"] == 2 * per_plan and report["rows"] == len(table)
    stored = await store.read_stream(f"plan:{cycle_id}:C1")
    # All of a plan's rows in one command: one request id, stored together (consecutive versions).
    request_id = stored[-1].metadata["request_id"]
    assert request_id.startswith("erp:erp-2027-batch-1:C1:")
    batch = [e for e in stored if e.metadata["request_id"] == request_id]
    assert [e.version for e in batch] == list(range(batch[0].version, batch[0].version + len(batch)))
    assert sum(e.type == "ActualRecorded" for e in batch) == per_plan == await recorded(store, cycle_id, "C1")
    assert {e.metadata["actor"] for e in batch} == {"erp"}

    # The same import again with the same key: the first answer, and nothing recorded twice.
    after = {u: await store.stream_version(f"plan:{cycle_id}:{u}") for u in UNITS}
    again = await http.post(f"/cycles/{cycle_id}/actuals/import", content=csv_text, headers=headers)
    assert again.status_code == 207 and again.json() == report
    assert again.headers["idempotent-replayed"] == "true"

    # A retry after a crash that lost the stored answer: each plan's rows are found in its stream by their
    # request id (key + unit + lines and content) and are not sent again.
    await store.pool.execute("DELETE FROM idempotency_keys WHERE key = 'erp-2027-batch-1'")
    retried = await http.post(f"/cycles/{cycle_id}/actuals/import", content=csv_text, headers=headers)
    assert retried.status_code == 207, retried.text
    plans = {p["unit_id"]: p for p in retried.json()["plans"]}
    assert (plans["C1"]["applied"], plans["C1"]["already_applied"], plans["C1"]["status"]) == (
        0,
        per_plan,
        "applied",
    )
    assert {u: await store.stream_version(f"plan:{cycle_id}:{u}") for u in UNITS} == after
    print(f"\nsetup {setup:.1f} s; import of {len(table)} rows ({2 * per_plan} applied) {took:.1f} s")


async def test_json_rows_and_corrections_and_refusals(
    http: httpx.AsyncClient,
    admin: Any,
    make_token: MakeToken,
    dev_server_env: WorkflowEnvironment,
    store: EventStore,
) -> None:
    cycle_id, months = await executing.executing_cycle(http, admin, dev_server_env.client, ["C1"], 2)
    planner = await make_token("c1-mgr", Role.PLANNER)
    path = f"/cycles/{cycle_id}/actuals/import"
    rows = [{"unit": "C1", "measure": "K01", "month": months[0], "value": 12.25}]
    first = await http.post(path, json={"rows": rows}, headers=planner)
    assert first.status_code == 200 and first.json()["applied"] == 1, first.text

    # A correction needs the flag and a reason; with them, the same row corrects the recorded actual.
    again = await http.post(path, json={"rows": rows}, headers=planner)
    assert again.status_code == 422 and again.json()["errors"][0]["code"] == "actual_exists"
    assert "set the row's correction to true and give a reason" in again.json()["errors"][0]["reason"]
    fix = [{**rows[0], "value": "13", "correction": "true", "reason": "late CRM sync"}]
    corrected = await http.post(path, json={"rows": fix}, headers=planner)
    assert corrected.status_code == 200, corrected.text
    stored = await store.read_stream(f"plan:{cycle_id}:C1")
    assert stored[-1].type == "ActualCorrected" and str(stored[-1].data["value"]) == "13"

    # Who may import, and what a broken file gets.
    auditor = await make_token("audit", Role.AUDITOR)
    assert (await http.post(path, json={"rows": rows}, headers=auditor)).status_code == 403
    scoped = await make_token("c2-only", Role.INTEGRATION, scopes=("C2",))
    outside = await http.post(path, json={"rows": [{**rows[0], "month": months[1]}]}, headers=scoped)
    assert outside.status_code == 422 and outside.json()["errors"][0]["code"] == "forbidden"
    bad_header = await http.post(
        path, content="unit,measure,moth,value\n", headers={**planner, "Content-Type": "text/csv"}
    )
    assert bad_header.status_code == 422 and "lacks month" in bad_header.json()["message"]
    missing = await http.post("/cycles/NOPE/actuals/import", json={"rows": rows}, headers=planner)
    assert missing.status_code == 404


async def test_a_plan_changed_between_the_check_and_the_send_records_none_of_its_rows(
    app: Any,
    http: httpx.AsyncClient,
    admin: Any,
    make_token: MakeToken,
    dev_server_env: WorkflowEnvironment,
    store: EventStore,
) -> None:
    cycle_id, months = await executing.executing_cycle(http, admin, dev_server_env.client, ["C1", "C2"], 2)
    erp = await make_token("erp", Role.INTEGRATION)
    table = executing.rows(["C1", "C2"], months[:3], 2)
    raw = parse_csv(executing.to_csv(table).encode())
    principal = Principal("erp", "ERP", frozenset({Role.INTEGRATION}), ())
    job = ActualsImport(SimpleNamespace(app=app), principal, cycle_id, "erp:race-1", "import")  # type: ignore[arg-type]
    await job.check(raw)
    assert not job.errors
    # Between the check and the send, someone records C1's revenue of the second month by hand.
    clash = next(r for r in table if (r["unit"], r["measure"], r["month"]) == ("C1", "revenue", months[1]))
    by_hand = await http.post(
        f"/cycles/{cycle_id}/plans/C1/commands/RecordActual",
        json={**{k: clash[k] for k in ("measure", "month", "currency")}, "value": "5", "source": "manual"},
        headers=erp,
    )
    assert by_hand.status_code == 200, by_hand.text
    before = await store.stream_version(f"plan:{cycle_id}:C1")

    status, report = await job.apply()
    assert status == 207
    plans = {p.unit_id: p for p in report.plans}
    assert (plans["C1"].status, plans["C1"].applied) == ("refused", 0)
    assert plans["C1"].not_applied_lines == [r.line for r in raw if r.fields["unit"] == "C1"]
    assert (plans["C2"].status, plans["C2"].applied) == ("applied", 9)
    assert await store.stream_version(f"plan:{cycle_id}:C1") == before  # none of C1's rows, not even line 2
    [error] = report.errors
    assert (error.line, error.code) == (table.index(clash) + 2, "actual_exists")
    assert error.reason.startswith("the plan changed after the check, so none of its rows were recorded: ")
