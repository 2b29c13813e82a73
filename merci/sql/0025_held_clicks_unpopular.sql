-- A click held for review (click_flags, migration 0023) no longer counts in thing_stats,
-- the things' clicks that the directory ranks by, the button shows and partners' analytics
-- read: a ring of sybil accounts clicking each other's things gamed the directory's
-- popularity although their money was held out of the close (issue 16). Flagging takes the
-- click out of its thing's month; releasing it puts it back (rejecting it leaves it out).
-- Triggers on click_flags, so every way of flagging (the scheduled scan, the close's own
-- screening) and of reviewing (merci_review_click) keeps the count, in its transaction.

create function merci_flags_leave_stats() returns trigger
language plpgsql security definer set search_path = public, pg_temp as $$
begin
  update thing_stats s set clicks = greatest(s.clicks - h.n, 0)
    from (select thing_id, period, count(*)::int as n from held group by 1, 2) h
   where s.thing_id = h.thing_id and s.period = h.period;
  return null;
end $$;
revoke execute on function merci_flags_leave_stats() from public;

create function merci_released_back_to_stats() returns trigger
language plpgsql security definer set search_path = public, pg_temp as $$
begin
  update thing_stats s set clicks = s.clicks + r.n
    from (select a.thing_id, a.period, count(*)::int as n
            from before_review b join after_review a on a.click_id = b.click_id
           where b.status = 'held' and a.status = 'released'
           group by 1, 2) r
   where s.thing_id = r.thing_id and s.period = r.period;
  return null;
end $$;
revoke execute on function merci_released_back_to_stats() from public;

create trigger click_flags_leave_stats after insert on click_flags
  referencing new table as held for each statement execute function merci_flags_leave_stats();
create trigger click_flags_released_back after update on click_flags
  referencing old table as before_review new table as after_review
  for each statement execute function merci_released_back_to_stats();
