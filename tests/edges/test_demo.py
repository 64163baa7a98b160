"""`planloop demo --exit` end to end, as a user runs it: a real process that starts the embedded stack and
tells the whole story through the HTTP API on a compressed calendar.

The story is checked in what the demo prints at the end: the audit history of the business unit's plan,
read back through the auditor's API, and the workflow replay verdict. Not timed: the wall time is printed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import free_ports, planloop_env, processes_using

pytestmark = pytest.mark.slow


def history_rows(output: str, event_type: str) -> list[str]:
    """The audit history's rows of one event type (a row names the type in its own column)."""
    return [line for line in output.splitlines() if re.search(rf"\s{event_type}(\s|$)", line)]


def test_the_demo_tells_the_whole_loop_and_prints_the_plans_audit_history(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = planloop_env(free_ports(4))
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "planloop", "demo", "--exit", "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.monotonic() - began
    out = result.stdout
    print(out)
    print(f"planloop demo --exit took {wall:.1f} s of wall time")
    assert result.returncode == 0, f"exit {result.returncode}\n{out}\n{result.stderr}"

    # The pushback: global leadership's counter-proposal, taken into revision 2, which is signed off.
    (pushback,) = history_rows(out, "ChangesRequested")
    assert "ceo" in pushback and "counter-proposal" in pushback
    revisions = history_rows(out, "RevisionRecorded")
    assert any("revision 2 (counter_proposal" in row for row in revisions), revisions
    (signed_off,) = history_rows(out, "PlanSignedOff")
    assert "revision 2 signed off" in signed_off
    # Three CSFs per team, aligned by both leads.
    assert len(history_rows(out, "CsfDefined")) == 6
    assert {
        t for t in ("sales", "marketing") for row in history_rows(out, "AlignmentConfirmed") if t in row
    } == {
        "sales",
        "marketing",
    }
    # A year of actuals, each month closed by the plan's own clock; the off-track month explained.
    assert len(history_rows(out, "MonthlyReportIssued")) == 12
    assert len(history_rows(out, "DeviationOpened")) == 2
    explained = history_rows(out, "DeviationExplained")
    assert len(explained) == 2 and any("emob-head" in row for row in explained), explained
    # Quarterly reviews, scoring, and the refine into the next iteration.
    assert len(history_rows(out, "QuarterlyReviewDue")) == 4
    assert len(history_rows(out, "QuarterlyReviewHeld")) == 4
    (scored,) = history_rows(out, "PlanScored")
    assert "emea-president" in scored
    (refined,) = history_rows(out, "StrategyRefined")
    assert "iteration 2" in refined and "1 lesson links" in refined
    assert "every plan is refined into iteration 2" in out
    # Replayed by the current workflow code, and the way in for the user.
    assert "the current workflow code reproduces every decision" in out
    api_port, ui_port = env["PLANLOOP_API_PORT"], env["PLANLOOP_TEMPORAL_UI_PORT"]
    assert f"http://127.0.0.1:{api_port}/docs" in out
    assert f"http://127.0.0.1:{ui_port}/namespaces/default/workflows/plan:FY2027:DE-EMOB" in out
    assert re.search(r"Wall time: [\d.]+ s in all", out)
    # --exit stopped everything it started; --data-dir keeps the data.
    assert processes_using(data_dir) == []
    assert (data_dir / "postgres").is_dir() and (data_dir / "temporal").is_dir()
