"""Wires the faces (api, directory) into servable apps, on the HTTP shell they share
(graph.http): each face's schema, its pages and its planned operations. The one place
that imports both faces; neither imports the other."""

from __future__ import annotations

import functools
from typing import Any, Literal

import strawberry
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from strawberry.annotation import StrawberryAnnotation
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types.union import StrawberryUnion

import api.accounts.pages
import api.clicks.mutations
import api.embeds.routes
import api.payments.webhook
import api.schema
import directory.page
import directory.queries
import directory.schema
import web.routes
from graph.http import create_app
from graph.limits import extensions
from graph.schema import Schema
from merci.config import Settings

Face = Literal["all", "api", "directory"]


def build_schema(face: Face = "all", *, production: bool = False) -> strawberry.federation.Schema:
    if face == "api":
        return api.schema.build(extensions(production=production))
    if face == "directory":
        return directory.schema.build(extensions(production=production))
    # One process serving both subgraphs merged (the embedded default: no Node needed).
    return _MergedSchema(
        # NodeQueries comes with the api subgraph; it resolves both subgraphs' types here.
        query=merge_types("Query", api.schema.QUERIES + directory.schema.QUERIES),
        mutation=merge_types("Mutation", api.schema.MUTATIONS + directory.schema.MUTATIONS),
        # The merged entities come first: their names then stand for both subgraphs' classes.
        types=[*_merged_entities(), *api.schema.TYPES, *directory.schema.TYPES],
        extensions=extensions(production=production),  # type: ignore[arg-type]
        federation_version="2.11",
        # Each subgraph has its own class for a shared entity (api's Creator, directory's
        # Creator); the merged class registered first is the one GraphQL type of that name.
        config=StrawberryConfig(_unsafe_disable_same_type_validation=True),
    )


class _MergedSchema(Schema):
    """Both subgraphs in one schema. Each shared entity has a class per subgraph; the
    `_Entity` union must name each entity once: the first class of that name in `types`."""

    def _get_federation_query_type(self, query: Any, mutation: Any, subscription: Any,
                                   additional_types: Any, name_converter: Any) -> type:
        root = super()._get_federation_query_type(query, mutation, subscription, additional_types, name_converter)
        entities: dict[str, type] = {}
        for t in additional_types:
            definition = getattr(t, "__strawberry_definition__", None)
            if definition is not None and any(type(d).__name__ == "Key" for d in definition.directives or ()):
                entities.setdefault(definition.name, t)
        union = StrawberryUnion("_Entity", type_annotations=tuple(
            StrawberryAnnotation(entities[name]) for name in sorted(entities)))
        for field in root.__strawberry_definition__.fields:  # type: ignore[attr-defined]
            if field.python_name == "_entities":
                field.type = list[union | None]  # type: ignore[valid-type]
        return root


def _merged_entities() -> list[type]:
    """One class per entity shared by the subgraphs, with every subgraph's fields, as
    the gateway would compose them. Resolvers read only `pk` and their own attributes,
    so an object made by either subgraph serves the merged type."""
    from api.accounts.types import Creator as ApiCreator
    from api.sites.types import ApiSite
    from directory.types import DirectoryCreator, Site

    merged = []
    for name, owner, contributor in (("Site", Site, ApiSite), ("Creator", ApiCreator, DirectoryCreator)):
        definition = owner.__strawberry_definition__  # type: ignore[union-attr]
        # Which objects are of this type: those either subgraph made for it. (Strawberry's
        # default also takes any instance of the type's interfaces, and every entity is a
        # Node: a Site read through `... on Creator` was taken for a Creator.)
        is_type_of = classmethod(lambda cls, obj, info, kinds=(owner, contributor): isinstance(obj, kinds))
        merged.append(strawberry.federation.type(type(name, (owner, contributor), {"is_type_of": is_type_of}),
                                                 name=name, keys=["id"], description=definition.description))
    return merged


def public_sdl() -> str:
    """schema.graphql: the merged graph as one process serves it."""
    return build_schema("all").as_str() + "\n"


def subgraph_sdl(face: Face) -> str:
    return build_schema(face).as_str()


def pages(face: Face, *, dev_env: bool = False) -> list[BaseRoute]:
    """What a face serves besides the shell's /graphql, probes and metrics: the api its
    embeds (button, login, submit, badges, oEmbed, OAuth) and the pages account mails
    link to (plus the dev mailbox in development and test: `dev_env`), the directory its
    /directory page; `all` both. The ingress (k8s/base/ingress.yaml) sends each path to
    the face that serves it, and tests/k8s checks it against these."""
    routes: list[BaseRoute] = []
    if face != "directory":
        routes += api.embeds.routes.routes() + api.accounts.pages.routes(dev_env=dev_env)
        routes += api.payments.webhook.routes()  # Stripe's events in
        # The web app (web/): its operations run in-process on both subgraphs merged, as
        # `merci serve all` serves them (its creators' pages need the directory's sites).
        routes += web.routes.routes(_web_schema(production=not dev_env))
    if face != "api":
        routes += directory.page.routes()
    return routes


@functools.cache
def _web_schema(*, production: bool) -> strawberry.Schema:
    return build_schema("all", production=production)


def app(settings: Settings, face: Face = "all", **kwargs: object) -> Starlette:
    # Each subgraph's planned operations come with it: the api's flattr, the directory's search.
    if face != "directory":
        kwargs["fast_mutations"] = api.clicks.mutations.FAST_MUTATIONS
    if face != "api":
        kwargs["fast_queries"] = directory.queries.FAST_QUERIES
    kwargs["routes"] = [*pages(face, dev_env=settings.dev_env), *kwargs.get("routes", [])]  # type: ignore[misc]
    if face != "directory":
        kwargs["frameable"] = api.embeds.routes.FRAMEABLE  # the button, in partners' pages
    # The schema is closed (no introspection, no `_service`) outside development and test.
    return create_app(settings, build_schema(face, production=not settings.dev_env), **kwargs)  # type: ignore[arg-type]
