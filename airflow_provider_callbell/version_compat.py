"""Every import that differs between Airflow versions lives here, and only here.

The rest of the package imports Airflow base classes from this module, so that supporting another
Airflow line means changing this file alone. Keep it cheap: it is imported when a DAG file imports
the operator, so only names that ``import airflow.sdk`` already loads belong at module level.
"""

from __future__ import annotations

from airflow.sdk import BaseHook, BaseOperator
from airflow.sdk.exceptions import AirflowException
from airflow.sdk.log import redact  # type: ignore[attr-defined]  # re-exported, not in __all__

# Airflow masks a connection's password itself when the connection is read; ``redact`` lets the
# tests prove that the token is masked on every Airflow line this package supports.
__all__ = ["AirflowException", "BaseHook", "BaseOperator", "redact"]
