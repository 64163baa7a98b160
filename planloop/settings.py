"""Settings for every edge of planloop, read from environment variables prefixed PLANLOOP_.

An unset address means "run it embedded": `planloop up` then starts PostgreSQL and a Temporal dev server under
the data folder. Setting an address switches that part to an external server (how planloop scales out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError

LogFormat = Literal["auto", "console", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

ENV_PREFIX = "PLANLOOP_"


def default_data_dir() -> Path:
    return platformdirs.user_data_path("planloop")


class Settings(BaseSettings):
    """planloop's configuration; each field is read from PLANLOOP_<FIELD NAME IN UPPER CASE>."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", validate_default=True)

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL DSN, e.g. postgresql://user:pass@host:5432/planloop. "
        "Unset: `planloop up` runs an embedded PostgreSQL under the data folder.",
    )
    temporal_address: str | None = Field(
        default=None,
        description="Temporal frontend address host:port. "
        "Unset: `planloop up` runs an embedded Temporal dev server under the data folder.",
    )
    temporal_namespace: str = Field(
        default="default", min_length=1, description="Temporal namespace of the plan workflows."
    )
    task_queue: str = Field(
        default="planloop", min_length=1, description="Temporal task queue the worker polls."
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder holding the embedded PostgreSQL and Temporal data, their logs and the lock of "
        "the running `planloop up`.",
    )
    db_pool_min: int = Field(default=2, ge=0, description="Minimum number of pooled database connections.")
    db_pool_max: int = Field(default=10, ge=1, description="Maximum number of pooled database connections.")
    worker_cache_size: int = Field(
        default=10_000,
        ge=1,
        description="Workflows a worker keeps in memory between their tasks (Temporal's sticky cache). A "
        "cycle walks all its plans in turn, so a cache smaller than the plans it has to hold makes every "
        "task replay the workflow's whole history. The worker's memory grows with it: each cached workflow "
        "keeps its state and its sandboxed instance.",
    )
    api_host: str = Field(default="127.0.0.1", description="Interface the HTTP API listens on.")
    api_port: int = Field(default=8360, ge=1, le=65535, description="Port of the HTTP API.")
    paced_cycles: bool = Field(
        default=False,
        description="Allow cycles on a compressed calendar (POST /cycles with a pace; `planloop demo`): "
        "their events carry calendar time, not real time. For installations meant for demos or training.",
    )
    webhook_private_targets: bool = Field(
        default=False,
        description="Allow webhook subscriptions to loopback, private and link-local addresses (receivers "
        "inside your network, tests); off, such targets are refused, also when a name resolves to one.",
    )
    postgres_port: int = Field(
        default=54329, ge=1, le=65535, description="Port of the embedded PostgreSQL (on 127.0.0.1)."
    )
    temporal_port: int = Field(
        default=7233,
        ge=1,
        le=65535,
        description="gRPC port of the embedded Temporal dev server (on 127.0.0.1).",
    )
    temporal_ui_port: int = Field(
        default=8233, ge=1, le=65535, description="Port of the embedded Temporal web UI (on 127.0.0.1)."
    )
    log_format: LogFormat = Field(
        default="auto",
        description="Log format: console (readable), json (one object a line), or auto "
        "(console when stderr is a terminal, json otherwise).",
    )
    log_level: LogLevel = Field(default="INFO", description="Level of planloop's own logs.")
    audit_key_file: Path | None = Field(
        default=None,
        description="PEM file of the Ed25519 key that signs audit checkpoints; generated (mode 0600) on "
        "first use. Unset: audit-key.pem in the data folder.",
    )
    secrets_key_file: Path | None = Field(
        default=None,
        description="File of the key that seals the webhook subscriptions' and inbound sources' shared "
        "secrets in the database; generated (mode 0600) at the API's first start; every API host needs "
        "the same file. Unset: secrets-key in the data folder.",
    )
    audit_checkpoint_interval: float = Field(
        default=300.0,
        ge=0,
        description="Seconds between signed audit checkpoints, published only when the store changed; "
        "0 turns the schedule off (POST /audit/checkpoints still publishes).",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url", "temporal_address", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # An exported-but-empty variable (PLANLOOP_DATABASE_URL=) means "embedded", not "connect to ''".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("db_pool_max")
    @classmethod
    def _pool_bounds(cls, value: int, info: ValidationInfo) -> int:
        minimum = info.data.get("db_pool_min", 0)
        if value < minimum:
            raise ValueError(f"db_pool_max ({value}) must be at least db_pool_min ({minimum})")
        return value

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def embedded_temporal(self) -> bool:
        return self.temporal_address is None

    @property
    def audit_key_path(self) -> Path:
        return self.audit_key_file or self.data_dir / "audit-key.pem"

    @property
    def secrets_key_path(self) -> Path:
        return self.secrets_key_file or self.data_dir / "secrets-key"


def env_name(field: str) -> str:
    """The environment variable that sets `field`, for error messages."""
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with `overrides` (e.g. CLI options) winning.

    An invalid value becomes a one-line ConfigurationError naming the environment variable.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        # A DSN may carry a password: never echo it.
        shown = "" if field == "database_url" else f"={first.get('input')!r}"
        raise ConfigurationError(f"invalid setting {env_name(field)}{shown}: {first['msg']}") from None
