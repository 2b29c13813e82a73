"""Money: integer minor units and an ISO currency. Never floats."""

from __future__ import annotations

from dataclasses import dataclass

from merci.errors import UserError

_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}


@dataclass(frozen=True, order=False)
class Money:
    minor: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.minor, int) or isinstance(self.minor, bool):
            raise TypeError("Money.minor must be an int")
        if len(self.currency) != 3 or not self.currency.isupper():
            raise ValueError(f"bad currency {self.currency!r}")

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise ValueError(f"cannot mix {self.currency} and {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def format(self) -> str:
        sign = "-" if self.minor < 0 else ""
        units, cents = divmod(abs(self.minor), 100)
        symbol = _SYMBOLS.get(self.currency)
        body = f"{units:,}.{cents:02d}"
        return f"{sign}{symbol}{body}" if symbol else f"{sign}{body} {self.currency}"

    def __str__(self) -> str:
        return self.format()


def parse_amount(value: object, *, field: str = "amount", minimum: int = 1) -> int:
    """A client-supplied amount in minor units: a positive integer, nothing else."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError("INVALID_AMOUNT", "amount must be an integer number of cents", field)
    if value < minimum:
        raise UserError(
            "AMOUNT_TOO_SMALL", f"amount must be at least {minimum} cents", field
        )
    if value > 10**12:
        raise UserError("AMOUNT_TOO_LARGE", "amount is too large", field)
    return value
