"""The directory subgraph's root types."""

from __future__ import annotations

import strawberry

from directory.queries import DirectoryQueries
from directory.types import Site
from graph.node import register

register("Site", Site.load)

QUERIES: tuple[type, ...] = (DirectoryQueries,)
MUTATIONS: tuple[type, ...] = ()
TYPES: tuple[type, ...] = (Site,)


def build(extensions: list[object]) -> strawberry.federation.Schema:
    return strawberry.federation.Schema(
        query=QUERIES[0],
        types=list(TYPES),
        extensions=extensions,  # type: ignore[arg-type]
        federation_version="2.11",
    )
