"""MERCI_ENV is one of a known set, and what must never reach real users (the `dev`
payment and payout providers: free money) is allowed by name, in development and test
only: staging, production and any environment added later refuse it, in the API, the
workers and the database (`merci migrate` sets migration 0016's dev_money)."""

from __future__ import annotations

import asyncpg
import pytest

from merci import config
from merci.config import DEV_ENVIRONMENTS, ENVIRONMENTS, Settings
from merci.db import migrate
from merci.errors import UserError
from merci.money import Money
from merci.payments import DevPayoutProvider, DevProvider, PayoutRefused, payout_provider_for, provider_for

CLOSED = [e for e in ENVIRONMENTS if e not in DEV_ENVIRONMENTS]


def test_the_environments() -> None:
    assert set(ENVIRONMENTS) == {"development", "test", "staging", "production"}
    assert DEV_ENVIRONMENTS == {"development", "test"}
    assert [Settings(env=e, secret_key="k").dev_env for e in ENVIRONMENTS] == [True, True, False, False]


@pytest.mark.parametrize("env", ["prod", "Production", "production ", "stagging", "dev", ""])
def test_an_unknown_environment_stops_the_start(monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    monkeypatch.setenv("MERCI_ENV", env)
    monkeypatch.setenv("MERCI_SECRET_KEY", "k")
    with pytest.raises(RuntimeError, match=r"MERCI_ENV=.* is not one of development, test, staging, production"):
        config.load()


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_known_environment_starts(monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    monkeypatch.setenv("MERCI_ENV", env)
    monkeypatch.setenv("MERCI_SECRET_KEY", "k")
    assert config.load().env == env


@pytest.mark.parametrize("env", sorted(DEV_ENVIRONMENTS))
async def test_dev_providers_in_development_and_test(env: str) -> None:
    charge = await provider_for("dev", env=env).charge(account_id=1, amount=Money(500, "EUR"), idempotency_key="k")
    assert (charge.provider, charge.amount) == ("dev", Money(500, "EUR"))
    transfer = await payout_provider_for("dev", env=env).send(account_id=1, amount=Money(500, "EUR"),
                                                              idempotency_key="p")
    assert transfer.reference == "dev:p"


@pytest.mark.parametrize("env", [*CLOSED, "anything-else"])
async def test_dev_providers_refused_everywhere_else(env: str) -> None:
    for pick in (provider_for, payout_provider_for):
        with pytest.raises(UserError) as err:
            pick("dev", env=env)
        assert (err.value.code, err.value.field) == ("PROVIDER_UNAVAILABLE", "provider")
        assert env in err.value.message
    # Made by hand, they refuse as well (a worker built with another environment's rule).
    with pytest.raises(UserError):
        await DevProvider(env=env).charge(account_id=1, amount=Money(500, "EUR"), idempotency_key="k")
    with pytest.raises(PayoutRefused):
        await DevPayoutProvider(env=env).send(account_id=1, amount=Money(500, "EUR"), idempotency_key="p")


async def test_migrate_turns_dev_money_on_in_development_and_test_only(database_url: str) -> None:
    async def dev_money() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            return str(await conn.fetchval("select value from merci_settings where name = 'dev_money'"))
        finally:
            await conn.close()

    try:
        for env in ENVIRONMENTS:
            await migrate(database_url, Settings(env=env, secret_key="k"))
            assert await dev_money() == ("on" if env in DEV_ENVIRONMENTS else "off"), env
    finally:
        await migrate(database_url, Settings(env="test"))
    assert await dev_money() == "on"
