"""GraphiQL served by Merci itself: Strawberry's page, with its scripts and styles taken
from graph/static/graphiql/ instead of unpkg.com, so the IDE works offline (`merci dev`
on a plane, a machine without internet). The files are npm's, unchanged: the page keeps
Strawberry's Subresource Integrity hashes, so a file that differs is refused by the
browser, and a Strawberry upgrade that loads another version fails tests/graph/test_graphiql.py."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from strawberry.http.ides import get_graphql_ide_html

from graph.security import page_csp

PATH = "/graphiql"  # where the files are served (not under /graphql, the API's own path)

# unpkg URL in Strawberry's page -> our file
ASSETS = {
    "https://unpkg.com/react@18.2.0/umd/react.production.min.js": "react.production.min.js",
    "https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js": "react-dom.production.min.js",
    "https://unpkg.com/js-cookie@3.0.5/dist/js.cookie.min.js": "js.cookie.min.js",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.css": "graphiql.min.css",
    "https://unpkg.com/graphiql@3.8.3/graphiql.min.js": "graphiql.min.js",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/style.css": "plugin-explorer.css",
    "https://unpkg.com/@graphiql/plugin-explorer@1.0.2/dist/index.umd.js": "plugin-explorer.umd.js",
}
_REMOTE = re.compile(r"""(?:src|href)=["'](https?://[^"']+)""")


def directory() -> str:
    return str(resources.files("graph") / "static" / "graphiql")


@cache
def page() -> str:
    html = get_graphql_ide_html(graphql_ide="graphiql")
    for remote, local in ASSETS.items():
        html = html.replace(remote, f"{PATH}/{local}")
    left = _REMOTE.findall(html)
    if left:  # a Strawberry upgrade loads something we do not serve: say so, do not go online
        raise RuntimeError(f"GraphiQL would load {left}: add them to graph/static/graphiql and graph.graphiql.ASSETS")
    return html


_INLINE = re.compile(r"<script>(.*?)</script>", re.S)


@cache
def csp() -> str:
    """The page's Content-Security-Policy: Merci's pages' (graph.security), with the
    page's own inline script allowed by its hash, and nothing else inline."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()}'"
                      for code in _INLINE.findall(page()))
    return page_csp(scripts=f"'self' {hashes}")
