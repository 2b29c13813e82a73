"""schema.graphql is generated from the code; any drift fails."""

from __future__ import annotations

import subprocess
import sys

from merci.faces import public_sdl, subgraph_sdl
from tests.conftest import ROOT


def test_schema_graphql_matches_code() -> None:
    committed = (ROOT / "schema.graphql").read_text()
    assert committed == public_sdl(), "schema.graphql drifted: run `merci schema export`"


def test_schema_check_command_fails_on_drift(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stale = tmp_path / "schema.graphql"
    stale.write_text(public_sdl().replace("type Query", "type Query @deprecated", 1))
    r = subprocess.run([sys.executable, "-m", "merci.cli", "schema", "check", "--path", str(stale)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "drifted" in r.stderr
    ok = subprocess.run([sys.executable, "-m", "merci.cli", "schema", "check", "--path",
                         str(ROOT / "schema.graphql")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_subgraphs_are_federation_2() -> None:
    for face in ("api", "directory"):
        sdl = subgraph_sdl(face)  # type: ignore[arg-type]
        assert "specs.apollo.dev/federation/v2.11" in sdl
        assert "@key" in sdl
