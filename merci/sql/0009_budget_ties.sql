-- The budget in force is the latest change; two changes of one account at the same
-- instant (a seed, an import) are told apart by id, the later one winning, everywhere:
-- the close's split, the projected split, the dashboard. The index serves that order.
create index budget_changes_latest on budget_changes (account_id, created_at desc, id desc);
drop index budget_changes_account_id_created_at_idx;
