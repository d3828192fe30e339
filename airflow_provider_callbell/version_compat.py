"""Every import that differs between Airflow versions lives here, and only here.

The rest of the package imports Airflow base classes from this module, so that supporting another
Airflow line means changing this file alone. Keep it cheap: it is imported when a DAG file imports
the operator, so only names that ``import airflow.sdk`` (or, on 2.x, ``import airflow``) already
loads belong at module level. The sensor and trigger base classes cost more (``airflow.triggers.base``
alone is ~9 ms), so they are imported on first use through the module ``__getattr__`` below: a DAG
that only sends messages never pays for them.

Each block below groups the names by the Airflow version that moved them; add a name to the block of
the version whose path it takes (``airflow.sdk`` on the first branch, the older path on ``else``).
The first branch is also what mypy checks (``TYPE_CHECKING``), against the Airflow 3.3 venv; the
2.x branches run in the test suite on Airflow 2.11. The 3.0-only paths are not run in CI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

_RELEASE = Version(AIRFLOW_VERSION).release  # (3, 1, 0) for 3.1.0, 3.1.0rc1 and 3.1.0.dev0 alike

AIRFLOW_V_3_0_PLUS: bool = _RELEASE >= (3, 0)
AIRFLOW_V_3_1_PLUS: bool = _RELEASE >= (3, 1)
AIRFLOW_V_3_2_PLUS: bool = _RELEASE >= (3, 2)
#: Airflow 3.3 gave tasks ``context["task_state_store"]``: what a rescheduled sensor keeps between pokes.
AIRFLOW_V_3_3_PLUS: bool = _RELEASE >= (3, 3)

# Task SDK since 3.0.
if TYPE_CHECKING or AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import BaseNotifier, BaseOperator, Context, Variable, conf
else:
    from airflow.configuration import conf
    from airflow.models.baseoperator import BaseOperator
    from airflow.models.variable import Variable
    from airflow.notifications.basenotifier import BaseNotifier
    from airflow.utils.context import Context

# Task SDK since 3.1 (3.0 still has them in Airflow core, as 2.x does).
if TYPE_CHECKING or AIRFLOW_V_3_1_PLUS:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,  # what a hook's get_connection raises for an undefined conn_id
        AirflowSensorTimeout,
    )
else:
    from airflow.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
    )
    from airflow.hooks.base import BaseHook

if TYPE_CHECKING:
    from airflow.sdk import BaseSensorOperator, Connection, PokeReturnValue
    from airflow.sdk.definitions._internal.mixins import ResolveMixin as ResolveMixin
    from airflow.triggers.base import BaseTrigger, TriggerEvent

#: Loaded on first access, see the module docstring: (module on 3.x, module on 2.x).
_LAZY = {
    "BaseSensorOperator": ("airflow.sdk", "airflow.sensors.base"),
    "PokeReturnValue": ("airflow.sdk", "airflow.sensors.base"),
    "Connection": ("airflow.sdk", "airflow.models.connection"),
    "BaseTrigger": ("airflow.triggers.base", "airflow.triggers.base"),
    "TriggerEvent": ("airflow.triggers.base", "airflow.triggers.base"),
    # What Airflow resolves when it renders template fields: XComArg, mapped arguments, LiteralValue.
    "ResolveMixin": ("airflow.sdk.definitions._internal.mixins", "airflow.utils.mixins"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = _LAZY[name][0 if AIRFLOW_V_3_0_PLUS else 1]
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later look-ups are plain attribute reads
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def aget_connection(hook: BaseHook, conn_id: str) -> tuple[Connection, dict[str, Any]]:
    """Read a connection and its extras from async code (a trigger) without blocking the event loop.

    ``BaseHook.aget_connection`` came with Airflow 3.1 and ``Connection.aextra_dejson`` with 3.3.2; the
    synchronous calls would block the triggerer's event loop on the supervisor. Airflow 2.x reads the
    connection from its database, which a worker thread may do.
    """
    if AIRFLOW_V_3_1_PLUS:
        conn = await hook.aget_connection(conn_id)
        aextra_dejson = getattr(conn, "aextra_dejson", None)  # 3.3.2+
        return conn, (await aextra_dejson() if aextra_dejson else conn.extra_dejson)
    import asyncio

    conn = await asyncio.to_thread(hook.get_connection, conn_id)
    return conn, conn.extra_dejson


def mask_secrets(text: str) -> str:
    """``text`` as Airflow's own logs show it: every secret its secrets masker knows replaced by ``***``.

    The masker knows each connection's password (once read), each sensitive Variable and whatever a
    task registered with ``mask_secret``. Its ``redact`` is not public API on any line (see
    ``tests/test_private_apis.py``): the task SDK's since 3.0, re-exported by ``airflow.sdk.log`` since
    3.1; Airflow 2's in ``airflow.utils.log.secrets_masker``.
    """
    if TYPE_CHECKING or AIRFLOW_V_3_1_PLUS:
        from airflow.sdk.log import redact  # type: ignore[attr-defined]  # re-exported, not in __all__
    elif AIRFLOW_V_3_0_PLUS:
        from airflow.sdk.execution_time.secrets_masker import redact
    else:
        from airflow.utils.log.secrets_masker import redact
    masked = redact(text)
    return masked if isinstance(masked, str) else str(masked)


def mask_secret(secret: str) -> None:
    """Register ``secret`` with Airflow's secrets masker, so that no log line shows it (public API on
    both lines: the task SDK's ``airflow.sdk.log``, Airflow 2's ``airflow.utils.log.secrets_masker``)."""
    if TYPE_CHECKING or AIRFLOW_V_3_0_PLUS:
        from airflow.sdk.log import mask_secret as register
    else:
        from airflow.utils.log.secrets_masker import mask_secret as register
    register(secret)


async def amask_secret(secret: str) -> None:
    """:func:`mask_secret` from a coroutine (a trigger): the task SDK's async form, which does not block
    on the supervisor's channel from inside the event loop."""
    if TYPE_CHECKING or AIRFLOW_V_3_0_PLUS:
        from airflow.sdk.log import amask_secret as register

        await register(secret)
    else:
        mask_secret(secret)


def first_reschedule_date(context: Any, retries: int) -> Any:
    """When a sensor in reschedule mode first started this try, or ``None`` before its first reschedule.

    The same look-up Airflow's own ``BaseSensorOperator.execute`` makes for its timeout: Airflow 3
    asks the supervisor; Airflow 2.11 reads its TaskReschedule table (``airflow dags test`` does not
    restore ``ti.start_date`` there, the scheduler does).
    """
    ti = context["ti"]
    if AIRFLOW_V_3_0_PLUS:
        return ti.get_first_reschedule_date(context)
    orig_start_date = importlib.import_module("airflow.sensors.base")._orig_start_date  # 2.11's own helper
    return orig_start_date(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        map_index=ti.map_index,
        try_number=(ti.max_tries or 0) - retries + 1,
    )


__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "BaseHook",
    "BaseNotifier",
    "BaseOperator",
    "BaseSensorOperator",
    "BaseTrigger",
    "Connection",
    "Context",
    "PokeReturnValue",
    "TriggerEvent",
    "Variable",
    "aget_connection",
    "amask_secret",
    "conf",
    "first_reschedule_date",
    "mask_secret",
    "mask_secrets",
]
