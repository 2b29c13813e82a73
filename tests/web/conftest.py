from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.partners.helpers import World, running_world


@pytest.fixture(scope="package")
def world(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Merci at http://127.0.0.1:<port> (`merci serve all`, its web app), with a worker,
    on a database of its own."""
    with running_world(server_url, tmp_path_factory.mktemp("web"), "merci_web") as w:
        yield w
