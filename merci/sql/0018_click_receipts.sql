-- What the API answered to each click sent with `flattr`, so that a receipt settles
-- (issue 14): until now `clickReceipt` read only what the workers stored (clicks,
-- click_rejections), so a click the API refused at once, and a key it never saw, both
-- read PENDING forever.
--
-- A row per (supporter, key): `refusal` null while the click is queued, else the code
-- the API refused it with. `clickReceipt` reads the workers' outcome first (a stored
-- click wins; a worker's refusal or this row, whichever is newer), then this, and a key
-- in none of them is UNKNOWN.
--
-- Why a table of its own rather than the workers' click_rejections: merci_app may not
-- write those (0016), and a SECURITY DEFINER door into them would let one SQL injection
-- mark any supporter's queued click refused there, where the close and the webhooks
-- read. Here the worst such a row can do is make a receipt lie until the workers settle
-- the click: no money moves on it.
--
-- Why UNLOGGED: it is written on the click's hot path, one multi-row statement per
-- group-committed batch beside its broker message. Without WAL that is nearly free and
-- commits without waiting for a flush; what a crash loses is only the receipts of
-- clicks not yet settled, which then read UNKNOWN: the client sends the same click
-- again, and its idempotency key makes it count once (docs/api.md says so).
create unlogged table click_receipts (
    supporter_id     bigint not null,
    idempotency_key  text not null check (length(idempotency_key) between 1 and 200),
    tenant_id        bigint not null,
    refusal          text check (refusal ~ '^[A-Z_]{1,40}$'),
    thing_id         bigint,
    period           merci_period not null,
    at               timestamptz not null default now(),
    primary key (supporter_id, idempotency_key)
);
-- The scheduler's purge: queued ones once the workers have settled them, refusals
-- after a week (merci.clicks.purge_receipts).
create index click_receipts_queued on click_receipts (at) where refusal is null;
create index click_receipts_refused on click_receipts (at) where refusal is not null;

alter table click_receipts enable row level security;
alter table click_receipts force row level security;
create policy system_all on click_receipts to merci_system, current_user using (true) with check (true);
-- The API checks a batch of one tenant's clicks on a connection of its own, for any
-- supporter of that tenant (merci.clicks.PrecheckBatcher); reads go through the
-- supporter's own `me`.
create policy tenant_rows on click_receipts to merci_app
  using (tenant_id = merci_tenant()) with check (tenant_id = merci_tenant());

grant select, insert, update, delete on click_receipts to merci_app;
grant select, delete on click_receipts to merci_system;
