"""SEPA credit-transfer batches, for operators who pay creators by bank.

`batch` (the operator: `merci sepa batch`): every pending `sepa` payout not yet in a batch,
with its creator's IBAN (checked again with schwifty) copied into the batch, written as one
pain.001.001.03 file by `sepaxml` and validated against the ISO 20022 schema that ships
with it. The payouts stay pending: their earnings stay reserved, nothing is posted.
`confirm` (`merci sepa confirm <id>`, once the bank has taken the file): each payout of the
batch is sent as any other (merci.payouts.send: the `payout` journal, keyed on the payout,
so a confirm run twice posts once), its reference the transfer's end-to-end id.
`cancel`: the batch's payouts leave it and wait for the next one.
"""

from __future__ import annotations

import secrets
from datetime import date

import asyncpg
from sepaxml import SepaTransfer

from merci import payouts
from merci.config import Settings
from merci.errors import UserError
from merci.money import Money
from merci.payments import PayoutRefused, Transfer
from merci.payout_methods import check_holder, check_iban

SCHEMA = "pain.001.001.03"


def pain001(settings: Settings, items: list[dict[str, object]], *, execution: date) -> tuple[str, str]:
    """(message id, the pain.001 XML) paying `items` (name, iban, bic, amount, end_to_end, text)."""
    if not (settings.sepa_debtor_name and settings.sepa_debtor_iban):
        raise UserError("PROVIDER_UNAVAILABLE", "set MERCI_SEPA_DEBTOR_NAME and MERCI_SEPA_DEBTOR_IBAN (and _BIC)")
    config: dict[str, object] = {"name": settings.sepa_debtor_name, "IBAN": settings.sepa_debtor_iban,
                                 "currency": settings.currency, "batch": True}
    if settings.sepa_debtor_bic:
        config["BIC"] = settings.sepa_debtor_bic
    doc = SepaTransfer(config, schema=SCHEMA, clean=True)
    for it in items:
        payment: dict[str, object] = {"name": it["name"], "IBAN": it["iban"], "amount": it["amount"],
                                      "execution_date": execution, "description": it["text"],
                                      "endtoend_id": it["end_to_end"]}
        if it.get("bic"):
            payment["BIC"] = it["bic"]
        doc.add_payment(payment)
    xml: bytes = doc.export(validate=True)  # against the XSD that ships with sepaxml
    return str(doc.msg_id), xml.decode()


async def batch(conn: asyncpg.Connection, settings: Settings, *, execution: date) -> int | None:
    """Write a batch of the pending `sepa` payouts (as merci_system); its id, or None when
    there is nothing to pay. A payout whose IBAN no longer checks fails (its earnings stay)."""
    async with conn.transaction():
        rows = await conn.fetch(
            "select p.id, p.amount, p.currency, m.iban, m.bic, m.holder from payouts p"
            "  left join payout_methods m on m.account_id = p.account_id"
            " where p.provider = 'sepa' and p.status = 'pending' and p.currency = $1"
            "   and not exists (select 1 from sepa_batch_items i join sepa_batches b on b.id = i.batch_id"
            "                    where i.payout_id = p.id and b.status <> 'cancelled')"
            " order by p.id for update of p", settings.currency)
        items = []
        for r in rows:
            try:
                iban, bic = check_iban(r["iban"], r["bic"])
                holder = check_holder(r["holder"])
            except UserError as err:
                await conn.execute("update payouts set status = 'failed', reason = $2, settled_at = now()"
                                   " where id = $1 and status = 'pending'", r["id"], f"SEPA: {err.message}"[:500])
                continue
            items.append({"payout": r["id"], "name": holder, "iban": iban, "bic": bic, "amount": r["amount"],
                          "end_to_end": f"MERCI-{r['id']}-{secrets.token_hex(4)}", "text": f"Merci payout {r['id']}"})
        if not items:
            return None
        message_id, xml = pain001(settings, items, execution=execution)
        batch_id: int = await conn.fetchval(
            "insert into sepa_batches (currency, message_id, payouts, total, xml) values ($1, $2, $3, $4, $5)"
            " returning id", settings.currency, message_id, len(items), sum(int(str(i["amount"])) for i in items), xml)
        # A cancelled batch's items give way to this one's.
        await conn.execute("delete from sepa_batch_items where payout_id = any($1::bigint[])",
                           [i["payout"] for i in items])
        await conn.executemany(
            "insert into sepa_batch_items (payout_id, batch_id, iban, bic, holder, end_to_end_id)"
            " values ($1, $2, $3, $4, $5, $6)",
            [(i["payout"], batch_id, i["iban"], i["bic"], i["name"], i["end_to_end"]) for i in items])
        return batch_id


class _Confirmed:
    """The bank took the batch: each of its transfers is done, named by its end-to-end id."""

    name = "sepa"

    def __init__(self, references: dict[int, str]) -> None:
        self.references = references

    async def send(self, *, account_id: int, amount: Money, idempotency_key: str) -> Transfer:
        payout_id = int(idempotency_key.rsplit("-", 1)[1])
        if payout_id not in self.references:
            raise PayoutRefused("not in the confirmed batch")
        return Transfer(self.name, self.references[payout_id])


async def confirm(conn: asyncpg.Connection, *, batch_id: int) -> dict[str, int]:
    """Mark each payout of a written batch sent (as merci_system); counts by status."""
    b = await conn.fetchrow("select status from sepa_batches where id = $1", batch_id)
    if b is None or b["status"] == "cancelled":
        raise UserError("NOT_FOUND", f"no batch {batch_id} to confirm")
    refs = {r["payout_id"]: r["end_to_end_id"] for r in await conn.fetch(
        "select payout_id, end_to_end_id from sepa_batch_items where batch_id = $1", batch_id)}
    counts: dict[str, int] = {}
    for payout_id in sorted(refs):
        status = await payouts.send(conn, payout_id=payout_id, provider=_Confirmed(refs))
        counts[status] = counts.get(status, 0) + 1
    await conn.execute("update sepa_batches set status = 'confirmed', confirmed_at = coalesce(confirmed_at, now())"
                       " where id = $1", batch_id)
    return counts


async def cancel(conn: asyncpg.Connection, *, batch_id: int) -> None:
    done = await conn.execute("update sepa_batches set status = 'cancelled' where id = $1 and status = 'written'",
                              batch_id)
    if not done.endswith(" 1"):
        raise UserError("INVALID_STATE", f"batch {batch_id} is not a written batch")
