"""Rate limits and the wrong-password lockout, against real API processes started with
production's limits (the shared fixtures multiply them a thousandfold; these do not).

Each test speaks as clients of its own: the APIs trust 127.0.0.1 as a proxy
(MERCI_TRUSTED_PROXIES), so X-Forwarded-For names a fresh client address per test, and
counters left in Redis by another run never meet these."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from merci.config import Settings
from merci.ratelimit import Limiter
from tests.conftest import SIGN_UP, VERIFY_EMAIL, mailed_token, need, start_api, unique

PRODUCTION_LIMITS = {"MERCI_RATE_LIMIT_MULTIPLIER": "1", "MERCI_TRUSTED_PROXIES": "127.0.0.1"}
LOG_IN = """mutation($input: LogInInput!) { logIn(input: $input) { token userErrors { code } } }"""
FLATTR = """mutation($input: FlattrInput!) { flattr(input: $input) { click { status } userErrors { code } } }"""
PASSWORD = "correct horse battery"


def fresh_ip() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{1 + secrets.randbelow(250)}"


class Client:
    def __init__(self, base: str, ip: str | None = None, token: str | None = None) -> None:
        headers = {"x-forwarded-for": ip or fresh_ip()}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=base, headers=headers, timeout=30)

    def post(self, query: str, variables: dict[str, Any]) -> httpx.Response:
        return self.http.post("/graphql", json={"query": query, "variables": variables})

    def sign_up(self) -> dict[str, str]:
        handle = unique("rl_")
        r = self.post(SIGN_UP, {"input": {"email": f"{handle}@example.org", "password": PASSWORD, "handle": handle}})
        assert r.status_code == 200, r.text
        assert r.json()["data"]["signUp"]["userErrors"] == []
        email = f"{handle}@example.org"  # verified as its owner would, which logs in
        r = self.post(VERIFY_EMAIL, {"input": {"token": mailed_token(str(self.http.base_url), email)}})
        assert r.status_code == 200 and r.json()["data"]["verifyEmail"]["token"], r.text
        return {"email": email, "token": r.json()["data"]["verifyEmail"]["token"]}

    def log_in(self, email: str, password: str) -> httpx.Response:
        return self.post(LOG_IN, {"input": {"email": email, "password": password}})


def assert_rate_limited(r: httpx.Response) -> int:
    assert r.status_code == 429, r.text
    wait = int(r.headers["retry-after"])
    assert wait >= 1
    body = r.json()
    assert "data" not in body  # the request's refusal: what a gateway relays as it is
    [error] = body["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfter"] == wait
    return wait


def wrong(r: httpx.Response) -> bool:
    return r.status_code == 200 and r.json()["data"]["logIn"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]


@pytest.fixture(scope="module")
def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    svc, base = start_api(database_url, tmp_path_factory.mktemp("limits"), **PRODUCTION_LIMITS)
    try:
        yield base
    finally:
        svc.stop()


def test_the_eleventh_wrong_login_is_refused_and_an_unknown_email_alike(api: str) -> None:
    client = Client(api)
    account = client.sign_up()
    for _ in range(10):
        assert wrong(client.log_in(account["email"], "not the password"))
    wait = assert_rate_limited(client.log_in(account["email"], "not the password"))
    assert 50 <= wait <= 60  # the first window: MERCI_LOGIN_LOCKOUT_SECONDS
    # Locked means locked: the right password waits too (and is not tried, nor told).
    assert_rate_limited(client.log_in(account["email"], PASSWORD))
    # From another address all the same: the lockout is the account's.
    assert_rate_limited(Client(api).log_in(account["email"], PASSWORD))
    # Nobody learns whether an email exists: an unknown one is answered the same way.
    nobody = Client(api)
    ghost = f"{unique('ghost_')}@example.org"
    for _ in range(10):
        assert wrong(nobody.log_in(ghost, "not the password"))
    assert 50 <= assert_rate_limited(nobody.log_in(ghost, "not the password")) <= 60


def test_the_owner_is_not_locked_out_for_good(database_url: str, tmp_path: Path) -> None:
    svc, base = start_api(database_url, tmp_path, MERCI_LOGIN_LOCKOUT_SECONDS="1", **PRODUCTION_LIMITS)
    try:
        client = Client(base)
        account = client.sign_up()
        for _ in range(10):
            assert wrong(client.log_in(account["email"], "not the password"))
        assert assert_rate_limited(client.log_in(account["email"], PASSWORD)) == 1
        time.sleep(1.2)  # the window ends
        r = client.log_in(account["email"], PASSWORD)
        assert r.status_code == 200 and r.json()["data"]["logIn"]["token"], r.text
        # and the success forgave the failures: one more wrong password is only wrong
        assert wrong(client.log_in(account["email"], "not the password"))
    finally:
        svc.stop()


def test_a_burst_of_sign_ups_is_refused(api: str) -> None:
    client = Client(api)
    for _ in range(5):
        client.sign_up()
    handle = unique("rl_")
    r = client.post(SIGN_UP, {"input": {"email": f"{handle}@example.org", "password": PASSWORD, "handle": handle}})
    assert_rate_limited(r)
    # another address is not held to this one's limit
    Client(api).sign_up()


def test_a_burst_of_clicks_is_refused(api: str) -> None:
    account = Client(api).sign_up()
    clicker = Client(api, token=account["token"])
    for i in range(60):  # refused (no means) or not, each counts
        r = clicker.post(FLATTR, {"input": {"url": f"https://example.org/post/{i}", "idempotencyKey": unique("k")}})
        assert r.status_code == 200, r.text
    r = clicker.post(FLATTR, {"input": {"url": "https://example.org/post/x", "idempotencyKey": unique("k")}})
    assert_rate_limited(r)  # through graph.fastpath
    # and through Strawberry (a fragment keeps the fast path out), worded alike
    r = clicker.post("mutation($input: FlattrInput!) { flattr(input: $input) { ...P } }"
                     " fragment P on FlattrPayload { userErrors { code } }",
                     {"input": {"url": "https://example.org/post/y", "idempotencyKey": unique("k")}})
    assert_rate_limited(r)


def test_forwarded_for_counts_only_from_a_trusted_proxy(database_url: str, tmp_path: Path) -> None:
    svc, base = start_api(database_url, tmp_path, MERCI_RATE_LIMIT_MULTIPLIER="1")  # trusts no proxy
    try:
        # Each sign-up from another "address": all the peer's, 127.0.0.1. signup.ip is 5 a
        # minute, counted in sliding windows (the previous minute's count weighs less as the
        # minute passes), so sign-ups across a minute's turn may take a few more to refuse:
        # counted per address, it never would.
        answers = []
        while len(answers) < 12 and (not answers or answers[-1].status_code == 200):
            handle = unique("rl_")
            answers.append(Client(base).post(SIGN_UP, {"input": {"email": f"{handle}@example.org",
                                                                 "password": PASSWORD, "handle": handle}}))
        assert_rate_limited(answers[-1])
        assert len(answers) >= 6 and all(r.json()["data"]["signUp"]["userErrors"] == [] for r in answers[:-1])
    finally:
        svc.stop()


def test_the_embed_login_page_answers_429_with_a_page(api: str) -> None:
    ip = fresh_ip()
    email = f"{unique('page_')}@example.org"
    http = httpx.Client(base_url=api, headers={"x-forwarded-for": ip, "origin": api}, timeout=30)
    answers = []
    for _ in range(11):
        form = http.get("/embed/login", params={"lang": "fr"})
        csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        answers.append(http.post("/embed/login?lang=fr", data={"email": email, "password": "not the password",
                                                               "csrf": csrf}))
    assert [a.status_code for a in answers] == [401] * 10 + [429]
    refused = answers[-1]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["content-type"].startswith("text/html")
    assert "Trop de tentatives" in refused.text


@pytest.fixture
def two_apis_on_redis(database_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    redis_url = os.environ.get("REDIS_URL", "")
    need(bool(redis_url), "REDIS_URL (limits shared across processes)")
    env = {**PRODUCTION_LIMITS, "MERCI_RATE_LIMIT_URL": redis_url}
    one, one_url = start_api(database_url, tmp_path, **env)
    try:
        two, two_url = start_api(database_url, tmp_path, **env)
        try:
            yield one_url, two_url
        finally:
            two.stop()
    finally:
        one.stop()


def test_limits_hold_across_two_api_processes(two_apis_on_redis: tuple[str, str]) -> None:
    one, two = two_apis_on_redis
    ip = fresh_ip()
    account = Client(one, ip).sign_up()
    for i in range(10):  # wrong passwords spread over both processes
        assert wrong(Client(one if i % 2 else two, ip).log_in(account["email"], "not the password"))
    assert_rate_limited(Client(one, ip).log_in(account["email"], PASSWORD))
    assert_rate_limited(Client(two, fresh_ip()).log_in(account["email"], PASSWORD))
    # sign-ups: five from one address, whichever process takes them, then refused by both
    for i in range(4):
        Client(two if i % 2 else one, ip).sign_up()
    handle = unique("rl_")
    for base in (one, two):
        assert_rate_limited(Client(base, ip).post(SIGN_UP, {"input": {
            "email": f"{handle}@example.org", "password": PASSWORD, "handle": handle}}))


def test_healthz_answers_while_wrong_logins_hash(api: str) -> None:
    """argon2 at its production parameters runs in the API's hashing threads: twenty wrong
    passwords in flight leave the event loop free to answer the probe."""
    results: list[httpx.Response] = []
    finished: list[float] = []

    def attempt(n: int) -> None:
        # distinct emails and addresses: every one is hashed, none locked out
        r = Client(api).log_in(f"{unique('flood_')}@example.org", f"wrong password {n}")
        results.append(r)
        finished.append(time.perf_counter())

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    latencies = []
    with httpx.Client(base_url=api, timeout=5) as probe:
        time.sleep(0.3)  # the logins are in: hashing, or queued for a hashing thread
        for _ in range(10):
            t0 = time.perf_counter()
            assert probe.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.02)
        probing_ended = time.perf_counter()
    for t in threads:
        t.join()
    assert len(results) == 20 and all(wrong(r) for r in results)
    # the logins were still in flight while the probe ran (20 hashes on 2 threads take longer)
    assert max(finished) > probing_ended > started
    # Half the probes or more within 50 ms (before, argon2 on the loop held every one for
    # seconds). Not all: on a machine whose cores other tests load too, the process's own
    # hashing threads spend its share of CPU, and the scheduler may then make the loop wait.
    assert sorted(latencies)[len(latencies) // 2] < 0.050, latencies


def test_a_click_counts_once_against_each_limit_across_two_processes(two_apis_on_redis: tuple[str, str]) -> None:
    """graph.fastpath counts a click's request, its cost and its click limits in one round
    trip to Redis (graph.ratelimit.admit), and the resolver does not count the click again:
    the 61st click is the first refused, whichever process takes it, and each request is
    counted once against its address."""
    one, two = two_apis_on_redis
    ip = fresh_ip()
    account = Client(one, ip).sign_up()  # two requests from `ip`
    for i in range(60):
        r = Client(one if i % 2 else two, ip, account["token"]).post(
            FLATTR, {"input": {"url": f"https://example.org/post/{i}", "idempotencyKey": unique("k")}})
        assert r.status_code == 200, r.text
        assert r.json()["extensions"]["cost"]["requestedQueryCost"] > 0
    for base in (one, two):
        assert_rate_limited(Client(base, ip, account["token"]).post(
            FLATTR, {"input": {"url": "https://example.org/post/x", "idempotencyKey": unique("k")}}))
    made = 2 + 60 + 2
    limiter = Limiter(Settings(env="test", rate_limit_url=os.environ["REDIS_URL"], rate_limit_multiplier=1))
    [per_minute] = limiter.limits["request.ip"]
    stats = asyncio.run(limiter.strategy.get_window_stats(per_minute, "request.ip", ip))
    # each request counted, once (a minute's turn during the test weighs the earlier ones less)
    assert 1200 - 2 * made < stats.remaining <= 1200 - made + 60
