"""The api subgraph's root types."""

from __future__ import annotations

import strawberry
from strawberry.tools import merge_types

import api.node  # noqa: F401  (registers node types)
from api.accounts.mutations import AccountMutations
from api.accounts.queries import AccountQueries
from api.accounts.types import Account, Creator
from api.budgets.mutations import BudgetMutations, BudgetQueries
from api.clicks.mutations import ClickMutations
from api.clicks.types import Click
from api.fraud.mutations import FraudMutations
from api.fraud.queries import FraudQueries
from api.partners.mutations import PartnerMutations
from api.partners.queries import PartnerQueries
from api.partners.types import LinkedAccount, OAuthClient, WebhookDelivery, WebhookEndpoint
from api.payments.mutations import PaymentMutations, PaymentQueries
from api.payouts.mutations import PayoutMutations, PayoutQueries
from api.sites.types import ApiSite
from api.subscriptions.mutations import SubscriptionMutations
from api.subscriptions.types import ThingSubscription
from api.tenants.mutations import TenantMutations
from api.tenants.queries import TenantQueries
from api.tenants.types import ApiKey, Tenant
from api.things.mutations import ThingMutations
from api.things.queries import ThingQueries
from api.things.types import Thing
from graph.node import NodeQueries
from graph.schema import Schema

QUERIES: tuple[type, ...] = (AccountQueries, TenantQueries, BudgetQueries, ThingQueries, PartnerQueries, PayoutQueries,
                             PaymentQueries, FraudQueries, NodeQueries)
MUTATIONS: tuple[type, ...] = (AccountMutations, TenantMutations, BudgetMutations, ThingMutations, ClickMutations,
                               SubscriptionMutations, PartnerMutations, PayoutMutations, PaymentMutations,
                               FraudMutations)
TYPES: tuple[type, ...] = (Account, Creator, Tenant, ApiKey, Thing, ThingSubscription, Click, ApiSite, WebhookEndpoint,
                           WebhookDelivery, OAuthClient, LinkedAccount)


def build(extensions: list[object]) -> strawberry.federation.Schema:
    return Schema(
        query=merge_types("Query", QUERIES),
        mutation=merge_types("Mutation", MUTATIONS),
        types=list(TYPES),
        extensions=extensions,  # type: ignore[arg-type]
        federation_version="2.11",
    )
