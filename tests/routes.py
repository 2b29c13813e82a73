"""The HTTP routes each face serves, read from the apps themselves (runtime.faces), so a
route added to a face is covered at once by the tests that use this: the ingress
(tests/k8s) and the split between `merci serve api` and `merci serve directory`
(tests/runtime/test_faces.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from merci.config import DEV_ENVIRONMENTS, Settings
from runtime import faces

FACES: tuple[faces.Face, ...] = ("all", "api", "directory")
_PARAM = re.compile(r"\{[^}]+\}")


@dataclass(frozen=True)
class Served:
    template: str  # as the app declares it: /badge/thing/{id}.svg
    path: str  # a concrete path it answers: /badge/thing/1.svg
    methods: frozenset[str]
    pattern: str  # the paths it answers, as a regular expression

    def answers(self, path: str, method: str) -> bool:
        return method in self.methods and re.fullmatch(self.pattern, path) is not None

    @property
    def method(self) -> str:
        """The method to try it with."""
        return "GET" if "GET" in self.methods else sorted(self.methods)[0]


def _served(route: BaseRoute) -> Served:
    if isinstance(route, Route):
        path = _PARAM.sub("1", route.path)
        assert route.path_regex.match(path), f"{path} does not match its own route {route.path}"
        return Served(route.path, path, frozenset(route.methods or {"GET"}), route.path_regex.pattern)
    if isinstance(route, Mount) and isinstance(route.app, StaticFiles):  # GraphiQL's, outside production
        first = min(p.name for p in Path(str(route.app.directory)).iterdir() if p.is_file())
        return Served(route.path + "/", f"{route.path}/{first}", frozenset({"GET", "HEAD"}),
                      re.escape(route.path) + "/.*")
    raise AssertionError(f"a route of a kind nobody taught tests/routes.py: {route!r}")


def served(face: faces.Face, env: str = "production") -> list[Served]:
    """Every route of the app `merci serve <face>` runs with MERCI_ENV=`env`."""
    app = faces.app(Settings(env=env, secret_key="tests-routes"), face)
    return [_served(r) for r in app.routes]


def pages(face: faces.Face, env: str = "production") -> list[Served]:
    """The face's own routes, beyond the shell (/graphql, probes, metrics) every face has,
    with MERCI_ENV=`env` (development and test add the dev mailbox)."""
    return [_served(r) for r in faces.pages(face, dev_env=env in DEV_ENVIRONMENTS)]
