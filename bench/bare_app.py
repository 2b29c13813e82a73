"""The limit for the HTTP path: a bare Starlette endpoint that reads a JSON body
and answers JSON, served by the same uvicorn settings as `merci serve`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def echo(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"data": {"ok": True, "size": len(body)}})


app = Starlette(routes=[Route("/graphql", echo, methods=["POST"])])
