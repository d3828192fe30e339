"""What every DAG-facing class of the provider shares: the connection id and a hook made on first use.

The operators, the sensors and the notifier are built when a DAG file is parsed, and most of them
never reach Callbell in that process. So this module imports nothing heavy: the hook, and with it
``requests``, is imported the first time ``hook`` is read, in the task or the callback that sends.
The default connection id lives here, once, for the same reason: a DAG-facing module can name it
without importing the hook.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_callbell.hooks.callbell import CallbellHook

#: The Airflow connection every class of the provider reads when it is given no ``callbell_conn_id``.
DEFAULT_CONN_ID = "callbell_default"


class CallbellHookMixin:
    """The ``callbell_conn_id`` of a class that talks to Callbell, and its
    :class:`~airflow_provider_callbell.hooks.callbell.CallbellHook`.

    A class mixes it in before its Airflow base class and keeps ``callbell_conn_id`` in its own
    ``__init__`` (Airflow reads an operator's explicit parameters to check ``partial``/``expand``)::

        class CallbellSendMessageOperator(CallbellHookMixin, BaseOperator):
            def __init__(self, *, callbell_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.callbell_conn_id = callbell_conn_id

    Triggers do not use ``hook``: each run makes its own and closes its async client when the run ends
    (see :class:`~airflow_provider_callbell.triggers.callbell.CallbellPollTrigger`).
    """

    callbell_conn_id: str

    @cached_property
    def hook(self) -> CallbellHook:
        """The hook, made once per object and imported here, so that parsing a DAG never imports ``requests``."""
        from airflow_provider_callbell.hooks.callbell import CallbellHook

        return CallbellHook(callbell_conn_id=self.callbell_conn_id)
