"""Every import that differs between Airflow versions lives here, and only here.

The rest of the package imports Airflow base classes from this module, so that supporting another
Airflow line means changing this file alone. Keep it cheap: it is imported when a DAG file imports
the operator, so only names that ``import airflow.sdk`` already loads belong at module level. The
sensor and trigger base classes cost more (``airflow.triggers.base`` alone is ~9 ms), so they are
imported on first use through the module ``__getattr__`` below: a DAG that only sends messages never
pays for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, BaseNotifier, BaseOperator, Variable, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout
from airflow.sdk.log import amask_secret, mask_secret

if TYPE_CHECKING:
    from airflow.sdk import BaseSensorOperator, Connection, PokeReturnValue
    from airflow.triggers.base import BaseTrigger, TriggerEvent

#: Loaded on first access, see the module docstring.
_LAZY = {
    "BaseSensorOperator": "airflow.sdk",
    "Connection": "airflow.sdk",
    "PokeReturnValue": "airflow.sdk",
    "BaseTrigger": "airflow.triggers.base",
    "TriggerEvent": "airflow.triggers.base",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups are plain attribute reads
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def aget_connection(hook: BaseHook, conn_id: str) -> tuple[Connection, dict[str, Any]]:
    """Read a connection and its extras from async code (a trigger) without blocking the event loop.

    ``BaseHook.aget_connection`` came with Airflow 3.1 and ``Connection.aextra_dejson`` with 3.3.2;
    the synchronous ``get_connection``/``extra_dejson`` would block the triggerer's event loop on
    the supervisor.
    """
    conn = await hook.aget_connection(conn_id)
    return conn, await conn.aextra_dejson()


__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "BaseHook",
    "BaseNotifier",
    "BaseOperator",
    "BaseSensorOperator",
    "BaseTrigger",
    "Connection",
    "PokeReturnValue",
    "TriggerEvent",
    "Variable",
    "aget_connection",
    "amask_secret",
    "conf",
    "mask_secret",
]
