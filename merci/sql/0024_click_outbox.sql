-- Accepted means durable in PostgreSQL (issue 17). With Redis or RabbitMQ as the broker,
-- a click answered PENDING lived only in the broker: Redis stopped with clicks queued
-- lost every one of them. Now the API writes each group-committed batch here, with its
-- clicks' receipts, in one statement, before it answers; then it sends the batch. The
-- worker deletes the row in the transaction that stores the clicks, so a row here is a
-- batch accepted and not yet stored, whatever became of its message. The scheduler sends
-- again what was never sent (the broker was down) and what was sent long ago and is still
-- here (the broker lost it): ingestion is idempotent on (supporter, key), so a batch sent
-- twice counts once (merci.click_outbox).
--
-- With the PostgreSQL broker the message itself is a row in PostgreSQL, so the API writes
-- no outbox row (merci.clicks.Handoff).
--
-- The batch is kept as signed by the API (merci.clicks.sign_batch), with its signature:
-- the scheduler sends it as it is and never signs anything, and the worker ingests only
-- what the API signed, so a row written by anyone else is dropped.
create table click_outbox (
    id          uuid primary key,
    tenant_id   bigint not null,
    batch       jsonb not null check (jsonb_typeof(batch) = 'array'),
    signature   text not null check (signature ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz not null default now(),
    -- when it was last handed to the broker; null: not yet (the API's send failed)
    sent_at     timestamptz default now(),
    attempts    integer not null default 0
);
create index click_outbox_sent on click_outbox (sent_at);

alter table click_outbox enable row level security;
alter table click_outbox force row level security;
create policy system_all on click_outbox to merci_system, current_user using (true) with check (true);
-- The API writes a batch of one tenant's clicks (merci.clicks.Handoff), reads them for
-- clickReceipt, and marks one unsent when the broker refused it: to null only, so that it
-- cannot hold a batch back from the scheduler's relay. It never deletes one.
create policy tenant_insert on click_outbox for insert to merci_app with check (tenant_id = merci_tenant());
create policy tenant_read on click_outbox for select to merci_app using (tenant_id = merci_tenant());
create policy tenant_unsent on click_outbox for update to merci_app
  using (tenant_id = merci_tenant()) with check (tenant_id = merci_tenant() and sent_at is null);

grant select on click_outbox to merci_app;
grant insert (id, tenant_id, batch, signature) on click_outbox to merci_app;
grant update (sent_at) on click_outbox to merci_app;
grant select, update, delete on click_outbox to merci_system;
