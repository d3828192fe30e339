from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest

from airflow_provider_callbell.sandbox import CallbellSandbox
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS
from tests.celery.helpers import CeleryDeployment, celery_deployment

if TYPE_CHECKING:
    from collections.abc import Iterator

# The deployment is Airflow 3's (`make test-celery` runs on the 3.3 line; its DAGs use the task SDK):
# on Airflow 2 there is nothing to collect here.
collect_ignore_glob = [] if AIRFLOW_V_3_0_PLUS else ["test_*.py"]

#: Seconds per delivery step of a sandbox message (a test changes it live).
STATUS_INTERVAL = 1.0


@pytest.fixture(scope="module")
def celery_sandbox() -> Iterator[CallbellSandbox]:
    """The sandbox every process of the deployment sends to, enforcing Callbell's 300 requests/s.

    It logs no line per message here: tens of thousands of them, kept by pytest's log capture, would
    take the CPU the sandbox needs to answer 300 requests per second.
    """
    logger = logging.getLogger("airflow_provider_callbell.sandbox")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with CallbellSandbox(status_interval=STATUS_INTERVAL, rate_limit=300) as sandbox:
            yield sandbox
    finally:
        logger.setLevel(level)


@pytest.fixture(scope="module")
def celery_airflow(
    celery_sandbox: CallbellSandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryDeployment]:
    """One CeleryExecutor deployment for the module's tests (starting one takes a minute)."""
    connection = json.loads(celery_sandbox.connection_json)
    # One rate limit for the account, kept in the deployment's Redis (a database of its own).
    connection["extra"] = {"rate_limit_storage": "{redis}/1"}
    with celery_deployment(tmp_path_factory.mktemp("celery_home"), json.dumps(connection)) as deployment:
        yield deployment
