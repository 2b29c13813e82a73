"""Wires the faces (api, directory) into servable apps. Like the CLI, the one
place in merci/ that imports them; the domain below never does."""

from __future__ import annotations

from typing import Literal

import strawberry
from starlette.applications import Starlette
from strawberry.tools import merge_types

import api.schema
import directory.schema
from api.http import create_app
from graph.limits import extensions
from merci.config import Settings

Face = Literal["all", "api", "directory"]


def build_schema(face: Face = "all") -> strawberry.federation.Schema:
    if face == "api":
        return api.schema.build(extensions())
    if face == "directory":
        return directory.schema.build(extensions())
    # One process serving both subgraphs merged (the embedded default: no Node needed).
    return strawberry.federation.Schema(
        # NodeQueries comes with the api subgraph; it resolves both subgraphs' types here.
        query=merge_types("Query", api.schema.QUERIES + directory.schema.QUERIES),
        mutation=merge_types("Mutation", api.schema.MUTATIONS + directory.schema.MUTATIONS),
        types=list(api.schema.TYPES + directory.schema.TYPES),
        extensions=extensions(),  # type: ignore[arg-type]
        federation_version="2.11",
    )


def public_sdl() -> str:
    """schema.graphql: the merged graph as one process serves it."""
    return build_schema("all").as_str() + "\n"


def subgraph_sdl(face: Face) -> str:
    return build_schema(face).as_str()


def app(settings: Settings, face: Face = "all", **kwargs: object) -> Starlette:
    return create_app(settings, build_schema(face), **kwargs)  # type: ignore[arg-type]
