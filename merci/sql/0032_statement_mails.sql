-- Monthly statements by mail (issue 19): once a month is closed, each account it charged
-- or paid is mailed a link to its statement, once (the primary key), by a money worker.

alter table mail_outbox drop constraint mail_outbox_kind_check;
alter table mail_outbox add constraint mail_outbox_kind_check
  check (kind in ('verify_email', 'sign_up_attempt', 'password_reset', 'password_changed', 'account_deleted',
                  'monthly_statement'));

create table statement_mails (
    account_id  bigint not null references accounts(id),
    period      merci_period not null,
    mail_id     bigint references mail_outbox(id),
    created_at  timestamptz not null default now(),
    primary key (account_id, period)
);

alter table statement_mails enable row level security;
alter table statement_mails force row level security;
create policy system_all on statement_mails to merci_system, current_user using (true) with check (true);
grant select, insert on statement_mails to merci_system;

-- The closed months whose statements have all been mailed: the scheduler looks no further.
create table statement_months (
    period     merci_period primary key,
    mailed_at  timestamptz not null default now()
);
alter table statement_months enable row level security;
alter table statement_months force row level security;
create policy system_all on statement_months to merci_system, current_user using (true) with check (true);
grant select, insert on statement_months to merci_system;
-- Months closed before statements were mailed: nobody is mailed their old months at once.
insert into statement_months (period) select period from month_closes where status = 'done';
-- The workers now write mail too (they only sent it before).
grant usage on sequence mail_outbox_id_seq to merci_system;
