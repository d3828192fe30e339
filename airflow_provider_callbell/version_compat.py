"""Every import that differs between Airflow versions lives here, and only here.

The rest of the package imports Airflow base classes from this module, so that supporting another
Airflow line means changing this file alone. Keep it cheap: it is imported when a DAG file imports
the operator, so only names that ``import airflow.sdk`` (or, on 2.x, ``import airflow``) already
loads belong at module level.

Each block below groups the names by the Airflow version that moved them; add a name to the block of
the version whose path it takes (``airflow.sdk`` on the first branch, the older path on ``else``).
The first branch is also what mypy checks (``TYPE_CHECKING``), against the Airflow 3.3 venv; the
2.x branches run in the test suite on Airflow 2.11. The 3.0-only paths are not run in CI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

_RELEASE = Version(AIRFLOW_VERSION).release  # (3, 1, 0) for 3.1.0, 3.1.0rc1 and 3.1.0.dev0 alike

AIRFLOW_V_3_0_PLUS: bool = _RELEASE >= (3, 0)
AIRFLOW_V_3_1_PLUS: bool = _RELEASE >= (3, 1)

# Task SDK since 3.0.
if TYPE_CHECKING or AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import BaseOperator, Context
else:
    from airflow.models.baseoperator import BaseOperator
    from airflow.utils.context import Context

# Task SDK since 3.1 (3.0 still has them in Airflow core, as 2.x does).
if TYPE_CHECKING or AIRFLOW_V_3_1_PLUS:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowException
else:
    from airflow.exceptions import AirflowException
    from airflow.hooks.base import BaseHook

# The secrets masker's redact, for the tests that prove the token is masked: Airflow masks a
# connection's password itself when the connection is read, on every line. The task SDK's own masker
# since 3.0, exported from airflow.sdk.log since 3.1.
if TYPE_CHECKING or AIRFLOW_V_3_1_PLUS:
    from airflow.sdk.log import redact  # type: ignore[attr-defined]  # re-exported, not in __all__
elif AIRFLOW_V_3_0_PLUS:
    from airflow.sdk.execution_time.secrets_masker import redact
else:
    from airflow.utils.log.secrets_masker import redact

__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_1_PLUS",
    "AirflowException",
    "BaseHook",
    "BaseOperator",
    "Context",
    "redact",
]
