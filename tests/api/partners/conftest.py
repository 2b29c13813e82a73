from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.partners.helpers import World, running_world


@pytest.fixture(scope="package")
def world(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A database of its own: these tests close months and watch every webhook."""
    with running_world(server_url, tmp_path_factory.mktemp("partners"), "merci_partners") as w:
        yield w
