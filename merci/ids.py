"""Relay global ids: base64("Type:123"), opaque to clients."""

from __future__ import annotations

import base64
import binascii

from merci.errors import UserError

MAX_ID = 2**63 - 1  # PostgreSQL's bigint: a larger id names nothing


def to_global(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def from_global(gid: str, *, expect: str | None = None, field: str = "id") -> tuple[str, int]:
    try:
        padded = gid + "=" * (-len(gid) % 4)
        type_name, _, raw = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        pk = int(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise UserError("INVALID_ID", "not a valid id", field) from exc
    if not 0 < pk <= MAX_ID or not type_name.isidentifier() or (expect is not None and type_name != expect):
        raise UserError("INVALID_ID", f"not a valid {expect or 'node'} id", field)
    return type_name, pk
