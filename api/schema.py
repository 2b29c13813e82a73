"""The api subgraph's root types."""

from __future__ import annotations

import strawberry
from strawberry.tools import merge_types

import api.node  # noqa: F401  (registers node types)
from api.accounts.mutations import AccountMutations
from api.accounts.queries import AccountQueries
from api.accounts.types import Account, Creator
from api.tenants.mutations import TenantMutations
from api.tenants.queries import TenantQueries
from api.tenants.types import ApiKey, Tenant
from graph.node import NodeQueries

QUERIES: tuple[type, ...] = (AccountQueries, TenantQueries, NodeQueries)
MUTATIONS: tuple[type, ...] = (AccountMutations, TenantMutations)
TYPES: tuple[type, ...] = (Account, Creator, Tenant, ApiKey)


def build(extensions: list[object]) -> strawberry.federation.Schema:
    return strawberry.federation.Schema(
        query=merge_types("Query", QUERIES),
        mutation=merge_types("Mutation", MUTATIONS),
        types=list(TYPES),
        extensions=extensions,  # type: ignore[arg-type]
        federation_version="2.11",
    )
