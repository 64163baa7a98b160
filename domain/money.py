"""Money: a Decimal amount in an ISO 4217 currency. Amounts in different currencies never mix silently."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated

from pydantic import StringConstraints

from domain.base import Amount, DomainModel
from domain.errors import DomainError, ErrorCode

CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

HUNDRED = Decimal(100)
PERCENT_STEP = Decimal("0.01")


class Money(DomainModel):
    amount: Amount
    currency: CurrencyCode

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(amount=Decimal(0), currency=currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise DomainError(
                ErrorCode.CURRENCY_MISMATCH,
                f"cannot combine {self.currency} and {other.currency}; convert one amount first or keep "
                "them as separate totals per currency",
            )

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(amount=self.amount - other.amount, currency=self.currency)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def quantize_like(value: Decimal, like: Decimal) -> Decimal:
    """Round `value` to the precision `like` was given in, so a 10% stretch of 100000 stays 110000."""
    exponent = like.as_tuple().exponent
    if not isinstance(exponent, int):  # pragma: no cover - NaN/Infinity are refused by validation
        return value
    return value.quantize(Decimal(1).scaleb(min(exponent, 0)), rounding=ROUND_HALF_UP)


def percent_change(old: Decimal | None, new: Decimal | None) -> Decimal | None:
    """Change from old to new in percent, or None when there is no base to compare with."""
    if old is None or new is None or old == 0:
        return None
    return ((new - old) / old * HUNDRED).quantize(PERCENT_STEP, rounding=ROUND_HALF_UP)


def totals_by_currency(amounts: Iterable[Money]) -> dict[str, Decimal]:
    """Sum amounts per currency; the rollup across units uses this instead of guessing exchange rates."""
    totals: dict[str, Decimal] = {}
    for money in amounts:
        totals[money.currency] = totals.get(money.currency, Decimal(0)) + money.amount
    return dict(sorted(totals.items()))
