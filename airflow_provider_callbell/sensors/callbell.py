"""Wait until a sent Callbell message is delivered (or read), or fail when it cannot be."""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_callbell.exceptions import CallbellAPIError, CallbellError, api_error_class
from airflow_provider_callbell.message_status import (
    DEFAULT_FAILURE_STATUSES,
    DEFAULT_TARGET_STATUSES,
    check_status_sets,
    message_outcome,
)
from airflow_provider_callbell.validation import is_templated, raised_for, validate_uuid
from airflow_provider_callbell.version_compat import (
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_callbell.hooks.callbell import CallbellHook


class CallbellMessageStatusSensor(BaseSensorOperator):
    """
    Wait for a sent message to reach a delivery status, e.g. until the on-call person's phone has it.

    Succeeds when the message reaches one of ``target_statuses``, or went past one on the road
    ``enqueued`` → ``sent`` → ``delivered`` → ``read`` (a message already ``read`` satisfies a wait
    for ``delivered``), and returns the status it saw (XCom ``return_value``). A status in
    ``failure_statuses`` fails the task with
    :class:`~airflow_provider_callbell.exceptions.CallbellMessageFailedError`, carrying Callbell's
    reason from ``messageStatusPayload``, without retries: the message's fate will not change. So does
    ``deleted`` unless it is a target. ``mismatch`` (WhatsApp corrected the phone number) counts as
    ``sent``: the message went out, so the sensor keeps waiting for its delivery; list ``mismatch``
    in ``failure_statuses`` to fail on it instead, or in ``target_statuses`` to accept it.

    Failures to ask (no answer, ``429``, ``5xx``) are logged and asked again at the next poke, until
    ``timeout``; a refused token or an unknown message fails at once. Poke, reschedule and deferrable
    modes decide with the same rule; in deferrable mode
    :class:`~airflow_provider_callbell.triggers.callbell.CallbellMessageStatusTrigger` polls from the
    triggerer every ``poke_interval`` seconds until ``timeout``. Delivery statuses exist only on
    WhatsApp Business API and WhatsApp QR API channels.

    .. code-block:: python

        send = CallbellSendMessageOperator(task_id="send", to="+31612345678", content={"text": "Hi"})
        wait = CallbellMessageStatusSensor(
            task_id="wait_for_delivery",
            message_uuid=send.output,  # or "{{ ti.xcom_pull(task_ids='send') }}"
            poke_interval=30,
            timeout=3600,
            deferrable=True,
        )

    :param message_uuid: uuid of the message, as ``CallbellSendMessageOperator`` returns it. (templated)
    :param target_statuses: statuses that end the wait successfully.
    :param failure_statuses: statuses that fail the task.
    :param callbell_conn_id: the Airflow connection holding the API token.
    :param deferrable: wait in the triggerer instead of a worker slot; defaults to Airflow's
        ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = ("message_uuid",)
    ui_color = "#2ec4a6"

    def __init__(
        self,
        *,
        message_uuid: str,
        target_statuses: Sequence[str] = DEFAULT_TARGET_STATUSES,
        failure_statuses: Sequence[str] = DEFAULT_FAILURE_STATUSES,
        callbell_conn_id: str = "callbell_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.message_uuid = message_uuid
        self.target_statuses, self.failure_statuses = check_status_sets(target_statuses, failure_statuses)
        self.callbell_conn_id = callbell_conn_id
        self.deferrable = deferrable
        if not is_templated(message_uuid):  # a wrong literal is a DAG import error naming the task
            with raised_for(f"task {self.task_id!r}"):
                validate_uuid("message_uuid", message_uuid)

    @cached_property
    def hook(self) -> CallbellHook:
        """The hook, imported here so that parsing a DAG never imports ``requests``."""
        from airflow_provider_callbell.hooks.callbell import CallbellHook

        return CallbellHook(callbell_conn_id=self.callbell_conn_id)

    def execute(self, context: Context) -> Any:
        validate_uuid("message_uuid", self.message_uuid)
        if self.deferrable:
            from airflow_provider_callbell.triggers.callbell import CallbellMessageStatusTrigger

            self.defer(  # ends this execution; execute_complete runs when the trigger fires
                trigger=CallbellMessageStatusTrigger(
                    message_uuid=self.message_uuid,
                    end_time=time.time() + self.timeout,
                    target_statuses=self.target_statuses,
                    failure_statuses=self.failure_statuses,
                    poll_interval=self.poke_interval,
                    callbell_conn_id=self.callbell_conn_id,
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )
        return super().execute(context)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        try:
            message = self.hook.get_message_status(self.message_uuid)
        except CallbellAPIError as err:
            if not err.is_transient:
                raise
            self.log.warning("Asking again in %s s: %s", self.poke_interval, err)
            return False
        self.log.info("Callbell message %s is %s", self.message_uuid, message.get("status"))
        status = message_outcome(message, self.target_statuses, self.failure_statuses)
        return PokeReturnValue(is_done=status is not None, xcom_value=status)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        """Turn the trigger's event into the same result or error that poke mode gives."""
        if event["event"] == "status":
            status = message_outcome(event["message"], self.target_statuses, self.failure_statuses)
            if status is None:  # only if the DAG's statuses changed while the task was deferred
                raise CallbellError(
                    f"Callbell message {self.message_uuid} is {event['message']['status']!r}, which is "
                    f"neither in target_statuses {self.target_statuses} nor in failure_statuses"
                )
            return status
        if event["event"] == "timeout":
            raise AirflowSensorTimeout(
                f"Callbell message {self.message_uuid} reached none of {', '.join(self.target_statuses)} "
                f"within {self.timeout} s (last status: {event['status']})"
            )
        raise api_error_class(event["status_code"])(
            event["reason"], status_code=event["status_code"], endpoint=event["endpoint"], body=event["body"]
        )
