"""Embedded servers for `planloop up` and tests: PostgreSQL and a Temporal dev server under a data folder."""

from .postgres import EmbeddedPostgres
from .temporal import EmbeddedTemporal

__all__ = ["EmbeddedPostgres", "EmbeddedTemporal"]
