"""Every import that differs between Airflow versions lives here, and only here.

The rest of the package imports Airflow base classes from this module, so that supporting another
Airflow line means changing this file alone. Keep it cheap: it is imported when a DAG file imports
the operator, so only names that ``import airflow.sdk`` already loads belong at module level.
"""

from __future__ import annotations

from airflow.sdk import BaseHook, BaseOperator, Variable
from airflow.sdk.exceptions import AirflowException
from airflow.sdk.log import mask_secret

__all__ = ["AirflowException", "BaseHook", "BaseOperator", "Variable", "mask_secret"]
