"""Airflow names the tests use that the package itself does not, from the running Airflow line.

The package's own version-dependent imports live in ``airflow_provider_callbell.version_compat``;
these are the test-only ones (a DAG to put in a context, task states, the deferral exception, the
DagBag, the DAG serializer and the secrets masker's ``redact`` and ``mask_secret``), plus what a DAG file has imported before it imports this provider.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_1_PLUS

if TYPE_CHECKING or AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import DAG, TaskInstanceState
    from airflow.sdk.exceptions import TaskDeferred
    from airflow.sdk.module_loading import import_string
    from airflow.serialization.serialized_objects import DagSerialization
else:
    from airflow.exceptions import TaskDeferred
    from airflow.models.dag import DAG
    from airflow.serialization.serialized_objects import SerializedDAG as DagSerialization
    from airflow.utils.module_loading import import_string
    from airflow.utils.state import TaskInstanceState

if TYPE_CHECKING or AIRFLOW_V_3_1_PLUS:
    from airflow.dag_processing.dagbag import DagBag
else:
    from airflow.models.dagbag import DagBag

# The secrets masker's redact, for the tests that prove the token is masked: Airflow masks a
# connection's password itself when the connection is read, on every line. The task SDK's own masker
# since 3.0, exported from airflow.sdk.log since 3.1 (re-exported there, not in its __all__).
if TYPE_CHECKING or AIRFLOW_V_3_1_PLUS:
    from airflow.sdk.log import mask_secret, redact
elif AIRFLOW_V_3_0_PLUS:
    from airflow.sdk.execution_time.secrets_masker import mask_secret, redact
else:
    from airflow.utils.log.secrets_masker import mask_secret, redact

#: What a DAG file imports before any provider: the task SDK on 3.x, the base operator on 2.x (where
#: ``import airflow`` alone already loads ``requests``).
_DAG_FILE_BASE_IMPORT = "airflow.sdk" if AIRFLOW_V_3_0_PLUS else "airflow.models.baseoperator"


def modules_added_by(modules: str, watched: list[str]) -> list[str]:
    """Which of ``watched`` importing ``modules`` loads, in a fresh interpreter after a DAG file's base."""
    code = (
        f"import sys, {_DAG_FILE_BASE_IMPORT}; before = set(sys.modules); import {modules}; "
        f"print(*[name for name in {watched!r} if name in sys.modules and name not in before])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.split()


__all__ = [
    "DAG",
    "DagBag",
    "DagSerialization",
    "TaskDeferred",
    "TaskInstanceState",
    "import_string",
    "mask_secret",
    "modules_added_by",
    "redact",
]
