-- A click is never answered PENDING and then refused MONTH_CLOSED (issue 17, item 5).
--
-- The API checks that a click's month is not being closed (merci.clicks.PRECHECK_SQL),
-- then writes the accepted batch: a click_outbox row (Redis, RabbitMQ) or the
-- clicks.ingest message itself (the PostgreSQL broker). The close of a month starts
-- under that month's advisory lock, taken exclusively (locks.MONTH, merci.close.start):
-- it waits for the month's ingestions, refuses to start while accepted clicks of the
-- month are still waiting to be stored, and records its month_closes row. A close that
-- started between the API's check and its write found no waiting click, and the workers
-- then refused the batch the client had been told was PENDING.
--
-- Now the write itself takes the shared lock of each month its clicks belong to and, once
-- it holds it, looks for the month's close: a close that began first has committed its
-- row by then (a statement of a VOLATILE function sees what committed before it began),
-- and the write is refused with SQLSTATE MC001, which the API answers MONTH_CLOSED
-- (merci.clicks.Handoff); a write that came first commits before the close can take its
-- lock, and the close then finds its clicks waiting. The lock lasts until the writer's
-- transaction ends: one statement for the API.
--
-- On dramatiq.queue it guards only clicks.ingest messages; a redelivery (the Retries
-- middleware enqueues again, ON CONFLICT DO UPDATE, which fires BEFORE INSERT too) meets
-- no close, since the close waits for messages a worker holds as for queued ones.
create function merci_refuse_closing_month() returns trigger
language plpgsql set search_path = public, pg_temp as $$
declare
  batch jsonb;
  closing date;
  p date;
begin
  if tg_table_name = 'click_outbox' then  -- (apart: each branch names a column of its own table)
    batch := new.batch;
  else
    batch := new.message->'args'->0;
  end if;
  if jsonb_typeof(batch) is distinct from 'array' then
    return new;  -- (not a batch: the workers drop it as they would have)
  end if;
  -- Each item is [supporter, tenant, thing, url, key, accepted_at, ...]; months in order,
  -- as ingestion takes them, so that two writers never wait on each other crosswise.
  for p in select distinct date_trunc('month', (c->>5)::timestamptz at time zone 'UTC')::date
             from jsonb_array_elements(batch) c order by 1 loop
    -- locks.MONTH, month_key(period) = YYYYMM
    perform pg_advisory_xact_lock_shared(7310003, (extract(year from p) * 100 + extract(month from p))::integer);
    select m.period into closing from month_closes m where m.period = p;
    if found then
      raise exception 'the close of % has started: its clicks are no longer accepted', to_char(closing, 'YYYY-MM')
        using errcode = 'MC001';
    end if;
  end loop;
  return new;
end $$;

create trigger refuse_closing_month before insert on click_outbox
  for each row execute function merci_refuse_closing_month();
create trigger refuse_closing_month before insert on dramatiq.queue
  for each row when (new.queue_name = 'clicks' and new.message->>'actor_name' = 'clicks.ingest')
  execute function merci_refuse_closing_month();
