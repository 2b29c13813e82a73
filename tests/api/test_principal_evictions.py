"""Cached principals follow the database: a logout, a revoked API key or a changed admin
right evicts them at once in every API process (LISTEN merci_principals), not when
their cache entry expires; and a process that cannot hear evictions caches nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import asyncpg

from merci import accounts, config, tenants
from merci.accounts import Principal, PrincipalCache, PrincipalEvictions
from tests import factories as f
from tests.conftest import GraphQLClient, sign_up, start_api, wait_for

ME = "{ me { handle } }"


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_evictions_follow_committed_changes(settings: config.Settings, system_pool: asyncpg.Pool,
                                                  database_url: str) -> None:
    cache = PrincipalCache(ttl=300)
    evictions = await PrincipalEvictions(settings.app_database_url, cache, retry=0.1).start()
    try:
        assert cache.listeners == 1
        async with system_pool.acquire() as conn:
            tenant = await f.merci_tenant(conn)
            fan, other = await f.person(conn, tenant, "fan"), await f.person(conn, tenant, "other")
            session = await accounts.issue_token(conn, tenant_id=tenant, account_id=fan, ttl=timedelta(hours=1))
            kept = await accounts.issue_token(conn, tenant_id=tenant, account_id=other, ttl=timedelta(hours=1))
            key_id, key = await tenants.create_api_key(conn, tenant_id=tenant, name="k", scopes=["read"],
                                                       created_by=None)
        now = time.monotonic()

        def cached(token: str, principal: Principal) -> None:
            cache.put(token, principal, now, cache.generation)
            assert cache.get(token, now) == principal

        cached(session, Principal(tenant_id=tenant, account_id=fan))
        cached(kept, Principal(tenant_id=tenant, account_id=other))
        cached(key, Principal(tenant_id=tenant, api_key_id=key_id, scopes=frozenset({"read"})))

        # A revocation rolled back announces nothing.
        async with system_pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            assert await accounts.revoke_token(conn, token=session)
            await tx.rollback()
        await asyncio.sleep(0.3)
        assert cache.get(session, now) is not None

        # A committed one, by whatever process: that account's sessions go, nothing else.
        async with system_pool.acquire() as conn:
            assert await accounts.revoke_token(conn, token=session)
        await until(lambda: cache.get(session, now) is None, "the revoked session to be evicted")
        assert cache.get(kept, now) is not None and cache.get(key, now) is not None

        async with system_pool.acquire() as conn:
            assert await tenants.revoke_api_key(conn, key_id=key_id)
        await until(lambda: cache.get(key, now) is None, "the revoked API key to be evicted")
        assert cache.get(kept, now) is not None

        # An admin right granted (or taken) changes the principal: it is looked up again.
        async with system_pool.acquire() as conn:
            await conn.execute("update account_private set is_tenant_admin = true where account_id = $1", other)
        await until(lambda: cache.get(kept, now) is None, "the new admin's principal to be evicted")

        # Without its connection the process cannot know what changed: it caches nothing
        # until it listens again.
        cached(kept, Principal(tenant_id=tenant, account_id=other, tenant_admin=True))
        assert evictions.conn is not None
        pid = evictions.conn.get_server_pid()
        owner = await asyncpg.connect(database_url)  # may end another role's backend
        try:
            assert await owner.fetchval("select pg_terminate_backend($1)", pid)
        finally:
            await owner.close()
        await until(lambda: cache.listeners == 0, "the lost connection to be noticed")
        assert cache.entries == {}
        cache.put(kept, Principal(tenant_id=tenant, account_id=other), now, cache.generation)
        assert cache.get(kept, now) is None
        await until(lambda: cache.listeners == 1, "the listener to reconnect")
        assert evictions.conn is not None and evictions.conn.get_server_pid() != pid
        cached(kept, Principal(tenant_id=tenant, account_id=other))
        async with system_pool.acquire() as conn:
            await conn.execute("update account_private set is_tenant_admin = false where account_id = $1", other)
        await until(lambda: cache.get(kept, now) is None, "an eviction heard on the new connection")
    finally:
        await evictions.close()
    assert cache.listeners == 0


def test_a_lookup_overtaken_by_an_eviction_is_not_cached() -> None:
    cache = PrincipalCache(ttl=300)
    cache.listening(+1)
    principal = Principal(tenant_id=1, account_id=7)
    before = cache.generation  # a lookup begins...
    cache.forget(account_id=7)  # ...the account's session is revoked meanwhile...
    cache.put("ms_1_token", principal, 0.0, before)  # ...and what the lookup read is not kept
    assert cache.get("ms_1_token", 0.0) is None
    cache.put("ms_1_token", principal, 0.0, cache.generation)
    assert cache.get("ms_1_token", 0.0) == principal
    assert cache.get("ms_1_token", 301.0) is None  # the ttl still bounds an entry


def test_a_logout_on_one_api_process_ends_the_session_on_another(database_url: str, tmp_path: Path) -> None:
    # Caches long enough that only an eviction can explain a refusal.
    a, a_url = start_api(database_url, tmp_path, "api", MERCI_AUTH_CACHE_SECONDS="300")
    try:
        b, b_url = start_api(database_url, tmp_path, "api", MERCI_AUTH_CACHE_SECONDS="300")
        try:
            user = sign_up(GraphQLClient(a_url))
            on_b = GraphQLClient(b_url, token=user["token"])
            for _ in range(3):  # resolved once, then from B's cache
                assert on_b(ME)["me"]["handle"] == user["handle"]
            out = GraphQLClient(a_url, token=user["token"])("mutation { logOut { ok } }")
            assert out["logOut"]["ok"] is True
            wait_for(lambda: "www-authenticate" in on_b.raw(ME).headers, timeout=5,
                     what="B to refuse the ended session")
            assert "revoked" in on_b.raw(ME).text
        finally:
            b.stop()
    finally:
        a.stop()


def test_evictions_find_their_entries_by_account_and_key() -> None:
    """An eviction touches only what it names (found by index, not by a scan), and the
    indexes follow entries as they are replaced, evicted or cleared."""
    cache = PrincipalCache(ttl=300)
    cache.listening(+1)
    for i in range(1, 1001):
        cache.put(f"ms_1_s{i}", Principal(tenant_id=1, account_id=i), 0.0, cache.generation)
        cache.put(f"mk_1_k{i}", Principal(tenant_id=1, api_key_id=i), 0.0, cache.generation)
    cache.put("ms_1_again", Principal(tenant_id=1, account_id=7), 0.0, cache.generation)
    assert len(cache.entries) == 2001 and len(cache.by_account[7]) == 2

    for account in range(1, 501):
        cache.forget(account_id=account)
    assert cache.get("ms_1_s7", 0.0) is None and cache.get("ms_1_again", 0.0) is None
    assert cache.get("ms_1_s501", 0.0) == Principal(tenant_id=1, account_id=501)
    assert len(cache.entries) == 1500 and set(cache.by_account) == set(range(501, 1001))

    cache.forget(api_key_id=3)
    assert cache.get("mk_1_k3", 0.0) is None and cache.get("mk_1_k4", 0.0) is not None
    assert 3 not in cache.by_key

    # A token resolved again for another account moves to that account's entries.
    cache.put("ms_1_s600", Principal(tenant_id=1, account_id=9999), 0.0, cache.generation)
    assert 600 not in cache.by_account and cache.by_account[9999] == {accounts.hash_secret("ms_1_s600")}
    cache.forget(account_id=600)
    assert cache.get("ms_1_s600", 0.0) == Principal(tenant_id=1, account_id=9999)

    cache.listening(-1)  # a lost listener: everything goes, indexes too
    assert cache.entries == {} and cache.by_account == {} and cache.by_key == {}
