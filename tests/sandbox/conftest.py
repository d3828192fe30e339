from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import requests

from tests.sandbox.helpers import TOKEN

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def client() -> Iterator[requests.Session]:
    """A session that sends the sandbox's default token, as the hook's session does."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        yield session
