"""`planloop up` end to end, as a user runs it: a real process, real servers, real signals."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import asyncpg
import httpx
import pytest

from .helpers import Up, assert_all_gone, free_ports, planloop, planloop_env, processes_using

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def env() -> dict[str, str]:
    return planloop_env(free_ports(3))


def assert_one_line_error(result: object, *fragments: str) -> None:
    assert result.returncode != 0  # type: ignore[attr-defined]
    stderr = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


async def execute(dsn: str, *statements: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        for sql in statements[:-1]:
            await conn.execute(sql)
        return await conn.fetch(statements[-1])
    finally:
        await conn.close()


def test_up_status_second_up_and_clean_stop(data_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    up = Up(data_dir, env, tmp_path / "logs")
    state = up.wait_ready()
    pg_port, temporal_port, ui_port = (
        int(env[f"PLANLOOP_{n}_PORT"]) for n in ("POSTGRES", "TEMPORAL", "TEMPORAL_UI")
    )
    try:
        out = up.stdout_path.read_text()
        api_url = f"http://127.0.0.1:{env['PLANLOOP_API_PORT']}"
        for where in (
            f"127.0.0.1:{pg_port}/planloop",
            f"127.0.0.1:{temporal_port}",
            f"http://127.0.0.1:{ui_port}",
            api_url,
            f"{api_url}/docs",
        ):
            assert where in out
        assert str(data_dir) in out
        # The HTTP API runs in `up`, with the readmodels commands on the same database.
        assert httpx.get(f"{api_url}/health", timeout=5).json() == {"status": "ok"}
        assert state["api"] == {"url": api_url, "docs_url": f"{api_url}/docs"}

        status = planloop("status", "--data-dir", str(data_dir), "--json", env=env)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["running"] and report["pid"] == up.proc.pid == state["pid"]
        assert report["postgres"] == {
            **state["postgres"],
            "dsn": f"postgresql://postgres@127.0.0.1:{pg_port}/planloop",
            "embedded": True,
            "reachable": True,
        }
        assert report["temporal"]["address"] == f"127.0.0.1:{temporal_port}"
        assert report["temporal"]["reachable"] and report["temporal"]["ui_reachable"]
        assert report["api"]["reachable"] and report["api"]["url"] == api_url
        models = planloop("readmodels", "status", "--data-dir", str(data_dir), env=env)
        assert models.returncode == 0 and "plan_list" in models.stdout, models.stderr

        second = planloop("up", "--data-dir", str(data_dir), env=env)
        assert_one_line_error(second, f"data folder {data_dir} is in use by planloop pid {up.proc.pid}")

        servers = up.descendants()
        assert {p.pid for p in servers} >= {state["postgres"]["pid"], state["temporal"]["pid"]}

        check_external_servers_mode(state, env, tmp_path)
    except BaseException:
        up.kill()
        raise

    assert up.terminate() == 0, up.output()
    assert_all_gone(servers, timeout=1)
    assert processes_using(data_dir) == []
    assert not (data_dir / "planloop.json").exists()
    after = planloop("status", "--data-dir", str(data_dir), "--json", env=env)
    assert after.returncode == 1 and json.loads(after.stdout)["running"] is False


def test_data_survives_restart_and_kill(data_dir: Path, env: dict[str, str], tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    up = Up(data_dir, env, logs)
    dsn = up.wait_ready()["postgres"]["dsn"]
    try:
        asyncio.run(
            execute(
                dsn,
                "CREATE TABLE survivors (name text)",
                "INSERT INTO survivors VALUES ('after a clean stop')",
                "SELECT 1",
            )
        )
    finally:
        assert up.terminate() == 0, up.output()

    # A SIGKILLed `planloop up` cannot clean up: its servers must stop by themselves ...
    up = Up(data_dir, env, logs)
    up.wait_ready()
    rows = asyncio.run(
        execute(dsn, "INSERT INTO survivors VALUES ('after a kill')", "SELECT name FROM survivors")
    )
    assert [r["name"] for r in rows] == ["after a clean stop", "after a kill"]
    servers = up.descendants()
    up.kill()
    assert_all_gone(servers, timeout=15)

    # ... and the next start must find the data as it was (stale pid files, state file and all).
    status = planloop("status", "--data-dir", str(data_dir), "--json", env=env)
    assert status.returncode == 1 and json.loads(status.stdout)["stale"] is True
    up = Up(data_dir, env, logs)
    try:
        up.wait_ready()
        rows = asyncio.run(execute(dsn, "SELECT name FROM survivors ORDER BY name"))
        assert [r["name"] for r in rows] == ["after a clean stop", "after a kill"]
    finally:
        assert up.terminate() == 0, up.output()
    assert processes_using(data_dir) == []


@pytest.mark.parametrize(
    ("which", "setting"),
    [
        (0, "PLANLOOP_POSTGRES_PORT"),
        (1, "PLANLOOP_TEMPORAL_PORT"),
        (2, "PLANLOOP_TEMPORAL_UI_PORT"),
        (3, "PLANLOOP_API_PORT"),
    ],
)
def test_port_in_use_is_a_one_line_error(which: int, setting: str, data_dir: Path) -> None:
    ports = free_ports(4)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports[which]))
        taken.listen()
        result = planloop("up", "--data-dir", str(data_dir), env=planloop_env(ports))
    assert_one_line_error(result, f"port {ports[which]}", setting)
    assert processes_using(data_dir) == []


def test_unusable_data_dir_is_a_one_line_error(tmp_path: Path, env: dict[str, str]) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    result = planloop("up", "--data-dir", str(not_a_folder / "data"), env=env)
    assert_one_line_error(result, "cannot write to data folder", "--data-dir")


def test_invalid_setting_is_a_one_line_error(data_dir: Path, env: dict[str, str]) -> None:
    result = planloop("up", "--data-dir", str(data_dir), env={**env, "PLANLOOP_TEMPORAL_PORT": "http"})
    assert_one_line_error(result, "PLANLOOP_TEMPORAL_PORT")


def test_worker_and_migrate_need_external_servers(env: dict[str, str]) -> None:
    assert_one_line_error(planloop("worker", env=env), "PLANLOOP_DATABASE_URL", "PLANLOOP_TEMPORAL_ADDRESS")
    assert_one_line_error(planloop("migrate", env=env), "PLANLOOP_DATABASE_URL")


def test_migrate_against_an_unreachable_database_is_a_one_line_error(env: dict[str, str]) -> None:
    (port,) = free_ports(1)
    result = planloop(
        "migrate", env={**env, "PLANLOOP_DATABASE_URL": f"postgresql://u:pw@127.0.0.1:{port}/x"}
    )
    assert_one_line_error(result, "cannot connect to PostgreSQL", "u:***@")
    assert ":pw@" not in result.stderr


def test_status_of_a_folder_never_used(tmp_path: Path, env: dict[str, str]) -> None:
    result = planloop("status", "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 1
    assert "not running" in result.stdout


def check_external_servers_mode(state: dict, env: dict[str, str], tmp_path: Path) -> None:
    """Configured addresses switch `up` to external servers (scale-out); `migrate` and `worker` use them."""
    external = {
        **env,
        "PLANLOOP_DATABASE_URL": state["postgres"]["dsn"],
        "PLANLOOP_TEMPORAL_ADDRESS": state["temporal"]["address"],
    }
    migrated = planloop("migrate", env=external)
    assert migrated.returncode == 0 and "up to date" in migrated.stdout, migrated.stderr

    worker = Up(tmp_path / "worker-data", external, tmp_path / "worker-logs", command=("worker",))
    worker.wait_for("worker polling")
    assert worker.descendants() == []
    assert worker.terminate() == 0, worker.output()

    other = tmp_path / "scaled-out"
    api = {"PLANLOOP_API_PORT": str(free_ports(1)[0])}
    # Another API host needs the first one's secrets key: without it, it refuses to start.
    refused = Up(other, {**external, **api}, tmp_path / "scaled-out-logs")
    assert refused.proc.wait(timeout=60) == 1
    assert "copy the key file of the API host that made it" in refused.output(), refused.output()
    shared_key = {"PLANLOOP_SECRETS_KEY_FILE": str(Path(state["data_dir"]) / "secrets-key")}
    up = Up(other, {**external, **api, **shared_key}, tmp_path / "scaled-out-logs")
    try:
        report = up.wait_ready()
        assert report["postgres"]["embedded"] is False and report["temporal"]["embedded"] is False
        assert report["temporal"]["ui_url"] is None
        assert up.descendants() == []  # it started no servers of its own
        assert not (other / "postgres").exists() and not (other / "temporal").exists()
    finally:
        assert up.terminate() == 0, up.output()


def test_settings_lists_every_variable(env: dict[str, str]) -> None:
    secret = {**env, "PLANLOOP_DATABASE_URL": "postgresql://u:pw@db/planloop"}
    result = planloop("settings", "--json", env=secret)
    assert result.returncode == 0, result.stderr
    rows = {row["variable"]: row for row in json.loads(result.stdout)}
    assert rows["PLANLOOP_POSTGRES_PORT"]["value"] == int(env["PLANLOOP_POSTGRES_PORT"])
    assert rows["PLANLOOP_DATABASE_URL"]["value"] == "postgresql://u:***@db/planloop"
    assert all(row["description"] for row in rows.values())
