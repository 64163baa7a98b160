from pathlib import Path

import pytest

from planloop.errors import ConfigurationError
from planloop.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("PLANLOOP_"):
            monkeypatch.delenv(name)


def test_defaults_run_everything_embedded() -> None:
    s = Settings()
    assert s.database_url is None and s.embedded_postgres
    assert s.temporal_address is None and s.embedded_temporal
    assert (s.temporal_namespace, s.task_queue) == ("default", "planloop")
    assert (s.postgres_port, s.temporal_port, s.temporal_ui_port) == (54329, 7233, 8233)
    assert (s.api_host, s.api_port) == ("127.0.0.1", 8360)
    assert s.data_dir.name == "planloop"
    assert (s.log_format, s.log_level) == ("auto", "INFO")


def test_every_field_is_documented() -> None:
    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undocumented == []


def test_environment_variables_with_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLANLOOP_DATABASE_URL", "postgresql://u:p@db:5432/planloop")
    monkeypatch.setenv("PLANLOOP_TEMPORAL_ADDRESS", "temporal:7233")
    monkeypatch.setenv("PLANLOOP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PLANLOOP_DB_POOL_MAX", "20")
    monkeypatch.setenv("PLANLOOP_LOG_LEVEL", "debug")
    monkeypatch.setenv("PLANLOOP_LOG_FORMAT", "JSON")
    s = load_settings()
    assert s.database_url == "postgresql://u:p@db:5432/planloop" and not s.embedded_postgres
    assert s.temporal_address == "temporal:7233" and not s.embedded_temporal
    assert s.data_dir == tmp_path
    assert s.db_pool_max == 20
    assert (s.log_level, s.log_format) == ("DEBUG", "json")


def test_an_empty_address_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANLOOP_DATABASE_URL", "")
    monkeypatch.setenv("PLANLOOP_TEMPORAL_ADDRESS", "  ")
    s = load_settings()
    assert s.embedded_postgres and s.embedded_temporal


def test_cli_override_wins_over_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLANLOOP_DATA_DIR", "/somewhere/else")
    assert load_settings(data_dir=tmp_path).data_dir == tmp_path
    assert load_settings(data_dir=None).data_dir == Path("/somewhere/else")


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANLOOP_POSTGRES_PORT", "70000")
    with pytest.raises(ConfigurationError, match=r"PLANLOOP_POSTGRES_PORT='70000'.*65535"):
        load_settings()


def test_invalid_log_format_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANLOOP_LOG_FORMAT", "xml")
    with pytest.raises(ConfigurationError, match="PLANLOOP_LOG_FORMAT"):
        load_settings()


def test_pool_max_below_min_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANLOOP_DB_POOL_MIN", "5")
    monkeypatch.setenv("PLANLOOP_DB_POOL_MAX", "2")
    with pytest.raises(ConfigurationError, match="PLANLOOP_DB_POOL_MAX"):
        load_settings()


def test_error_never_echoes_a_database_password(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(database_url=["postgresql://u:secret@db/planloop"])  # not a string
    assert "PLANLOOP_DATABASE_URL" in str(info.value)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("name", ["PLANLOOP_TASK_QUEUE", "PLANLOOP_TEMPORAL_NAMESPACE"])
def test_empty_queue_or_namespace_is_refused(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    # A worker on an empty task queue starts without complaint and never receives a task.
    monkeypatch.setenv(name, "")
    with pytest.raises(ConfigurationError, match=name):
        load_settings()
