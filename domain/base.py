"""Shared building blocks of the domain model: frozen models, UTC times, months, org levels."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints


class DomainModel(BaseModel):
    """Frozen and strict about unknown fields: a typo in a stored event must fail loudly, not vanish."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# Every amount, target and percentage a person or system enters. Bounded so that every sum, ratio and
# percentage the rules compute from them fits Decimal's 28-digit context: an unbounded 1E+40 in an actual
# was accepted once and then made the monthly close fail for ever.
Amount = Annotated[Decimal, Field(max_digits=20, decimal_places=6)]


def _require_utc(value: datetime) -> datetime:
    # Naive times are refused rather than guessed: a plan spans time zones and the hash chain needs one clock.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a time must be timezone-aware (UTC)")
    return value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_require_utc)]

# Months are "YYYY-MM" strings: they sort correctly, read well in JSON and make natural mapping keys.
Month = Annotated[str, StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]


def month_add(month: str, count: int) -> str:
    """The month `count` months after `month` (negative counts go back)."""
    year, mon = int(month[:4]), int(month[5:7])
    index = year * 12 + (mon - 1) + count
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_start(month: str) -> datetime:
    return datetime(int(month[:4]), int(month[5:7]), 1, tzinfo=UTC)


class OrgLevel(StrEnum):
    GLOBAL = "global"
    REGION = "region"
    COUNTRY = "country"
    BUSINESS_UNIT = "business_unit"

    @property
    def rank(self) -> int:
        return list(OrgLevel).index(self)
