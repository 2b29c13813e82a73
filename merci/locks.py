"""Every PostgreSQL advisory lock Merci takes, and what it guards.

PostgreSQL keeps one-key locks (a bigint) and two-key locks (two integers) apart, so
RANKINGS and the namespace of CLOSE_SHARD share a number without meeting. Merci's ids
start 7310, clear of dramatiq-postgres's own (its maintenance lock hashes its namespace).
Migrations' SQL functions cannot import this module: they write the numbers out, and
tests/merci/test_locks.py holds every number in merci/sql/ to a constant here.
"""

from __future__ import annotations

# One key, session-level: one `merci migrate` at a time (merci.db.migrate).
MIGRATIONS = 7_310_001

# Two keys (MONTH, month_key(period)): click ingestion and subscriptions' materializing
# hold a month's shared; the start of its close takes it exclusively, so no click of the
# month commits after the close has begun (merci.clicks, merci.subscriptions, merci.close).
MONTH = 7_310_003

# Two keys (CLOSE_SHARD, month_key(period) * 4096 + shard): one worker at a time runs a
# shard of a month's close (merci.close; tests/ops/test_scale_out.py looks for holders).
CLOSE_SHARD = 7_310_004

# One key: one refresh of the directory's rankings at a time (merci.search).
RANKINGS = 7_310_004

# Two keys: every change of a thing's owner takes it exclusively (merci_assign_thing,
# merci_adopt_scope: migration 0015), new things (its trigger) and each close shard take
# it shared, so a shard never posts escrow for a thing a claim released meanwhile.
OWNERSHIP = (7_310_005, 0)

# One key per creator, hashed from this prefix and the account id: one payout request at
# a time, so what one reserves the next one sees (merci.payouts).
PAYOUT_PREFIX = "merci.payout:"

# One key per supporter, hashed from this prefix and the account id: money taken from a
# balance outside the close (a refund, a dispute's freeze), one at a time; with the
# running close's shard lock of that supporter (merci.budgets.lock_balance).
BALANCE_PREFIX = "merci.balance:"

# One key per supporter: one top-up started at a time, so a new account's monthly bound
# counts every other (merci.topups).
TOPUP_PREFIX = "merci.topup:"
