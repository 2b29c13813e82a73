"""The directory subgraph's root types."""

from __future__ import annotations

import strawberry
from strawberry.tools import merge_types

from directory.mutations import DirectoryMutations
from directory.queries import DirectoryQueries
from directory.types import DirectoryCreator, Site
from graph.node import register
from graph.schema import Schema

register("Site", Site.load)

QUERIES: tuple[type, ...] = (DirectoryQueries,)
MUTATIONS: tuple[type, ...] = (DirectoryMutations,)
TYPES: tuple[type, ...] = (Site, DirectoryCreator)


def build(extensions: list[object]) -> strawberry.federation.Schema:
    return Schema(
        query=merge_types("Query", QUERIES),
        mutation=merge_types("Mutation", MUTATIONS),
        types=list(TYPES),
        extensions=extensions,  # type: ignore[arg-type]
        federation_version="2.11",
    )
