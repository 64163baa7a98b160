import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from planloop.logging import bound_contextvars, configure_logging, get_logger


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("temporalio", "asyncpg")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in quiet.items():
        logging.getLogger(name).setLevel(lvl)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_bound_ids() -> None:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    log = get_logger("planloop.test")
    with bound_contextvars(plan_id="plan:FY2027:DE-SALES", request_id="r-1"):
        log.info("revision submitted", revision=3)
    log.info("outside")
    first, second = lines(stream)
    assert first["event"] == "revision submitted"
    assert first["plan_id"] == "plan:FY2027:DE-SALES" and first["request_id"] == "r-1"
    assert first["revision"] == 3 and first["level"] == "info" and first["logger"] == "planloop.test"
    assert "timestamp" in first
    assert "plan_id" not in second


def test_level_filters_own_logs() -> None:
    stream = io.StringIO()
    configure_logging("json", "WARNING", stream=stream)
    log = get_logger("planloop.test")
    log.info("hidden")
    log.warning("shown")
    assert [e["event"] for e in lines(stream)] == ["shown"]


def test_library_logs_go_through_structlog_at_warning() -> None:
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream=stream)
    with bound_contextvars(workflow_id="plan:FY2027:DE-SALES"):
        logging.getLogger("temporalio.worker").info("poll")
        logging.getLogger("asyncpg.pool").debug("connection")
        logging.getLogger("temporalio.activity").warning(
            "activity %s retried",
            "append_events",
            extra={"temporal_activity": {"activity_type": "append_events"}},
        )
    (entry,) = lines(stream)
    assert entry["event"] == "activity append_events retried"
    assert entry["logger"] == "temporalio.activity" and entry["level"] == "warning"
    assert entry["workflow_id"] == "plan:FY2027:DE-SALES"
    # temporalio's nested extras are lifted to the flat keys every planloop line uses.
    assert entry["activity_type"] == "append_events" and "temporal_activity" not in entry


def test_workflow_extras_become_flat_plan_keys() -> None:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    logging.getLogger("planloop.workflows.plan").info(
        "command applied",
        extra={
            "temporal_workflow": {"workflow_id": "plan:FY2027:DE", "run_id": "r-1", "namespace": "default"},
            "plan_id": "plan:FY2027:DE",
            "request_id": "req-7",
        },
    )
    (entry,) = lines(stream)
    assert (entry["workflow_id"], entry["run_id"]) == ("plan:FY2027:DE", "r-1")
    assert (entry["plan_id"], entry["request_id"]) == ("plan:FY2027:DE", "req-7")
    assert "namespace" not in entry and "temporal_workflow" not in entry


def test_exceptions_become_structured_in_json() -> None:
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream)
    try:
        raise ValueError("bad revision")
    except ValueError:
        get_logger("planloop.test").exception("failed")
    (entry,) = lines(stream)
    assert entry["exception"][0]["exc_type"] == "ValueError"


def test_auto_is_console_on_a_terminal_and_json_otherwise() -> None:
    tty, pipe = TTY(), io.StringIO()
    configure_logging("auto", "INFO", stream=tty)
    get_logger("planloop.test").info("hello", plan_id="p")
    configure_logging("auto", "INFO", stream=pipe)
    get_logger("planloop.test").info("hello", plan_id="p")
    assert "hello" in tty.getvalue() and "plan_id" in tty.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(tty.getvalue())
    assert lines(pipe)[0]["event"] == "hello"


def test_console_format_is_forced_even_when_piped() -> None:
    stream = io.StringIO()
    configure_logging("console", "INFO", stream=stream)
    get_logger("planloop.test").info("hello")
    text = stream.getvalue()
    assert "hello" in text and not text.startswith("{")
    assert "\x1b[" not in text  # no colour codes when the stream is not a terminal


def test_reconfiguring_replaces_the_handler() -> None:
    configure_logging("json", "INFO", stream=io.StringIO())
    configure_logging("json", "INFO", stream=io.StringIO())
    assert len(logging.getLogger().handlers) == 1
