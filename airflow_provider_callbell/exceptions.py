"""The exceptions this provider raises, rooted in ``AirflowException`` so any of them fails a task.

Callers branch on the type and on attributes (``status_code``, ``endpoint``, ``body``, ``is_transient``,
``status``), never on the message text. No message ever contains the API token: the token is never
passed to these classes. The tree::

    AirflowException
    └── CallbellError
        ├── CallbellValidationError         bad input, nothing sent        (AirflowFailException, ValueError)
        ├── CallbellConnectionConfigError   missing or unsafe connection   (AirflowFailException, ValueError)
        ├── CallbellAPIError                a request went wrong: .status_code, .endpoint, .body
        │   ├── CallbellAuthError           401, 403
        │   ├── CallbellRateLimitError      429, .retry_after
        │   ├── CallbellServerError         5xx
        │   ├── CallbellInvalidResponseError  an answer that cannot be used
        │   ├── CallbellNoAnswerError       no HTTP answer (status_code None)
        │   │   ├── CallbellTimeoutError    no complete answer within the timeouts
        │   │   └── CallbellConnectError    no connection could be made: .host
        │   └── AirflowAPIError             Airflow's own REST API (the HITL bridge): same attributes
        ├── CallbellMessageFailedError      a sent message ended failed    (AirflowFailException)
        └── CallbellBulkSendError           some messages of a bulk send failed

``is_transient`` is true for :class:`CallbellNoAnswerError` (and so :class:`CallbellTimeoutError`),
:class:`CallbellRateLimitError` and :class:`CallbellServerError`: asking again later may succeed.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_callbell.version_compat import AirflowException, AirflowFailException

#: How much of a response body an error keeps: enough to read Callbell's reason, never a whole page.
BODY_EXCERPT_CHARS = 500


class CallbellError(AirflowException):
    """Base class of every error raised by the Callbell provider.

    ``status_code`` is Callbell's HTTP status on :class:`CallbellAPIError` and ``None`` everywhere
    else: ``AirflowException`` declares it as HTTP 500 for Airflow's own API, which would be a fake
    status on an error that never reached Callbell (bad input, bad configuration).
    """

    status_code: int | None = None  # type: ignore[assignment]  # an HTTPStatus in AirflowException


class CallbellValidationError(CallbellError, AirflowFailException, ValueError):
    """A message or argument is invalid; raised before any request is sent.

    It is an ``AirflowFailException`` too, so the task fails without retries: the same input would
    fail the same way at every try, only later.
    """


class CallbellConnectionConfigError(CallbellError, AirflowFailException, ValueError):
    """The Airflow connection is missing, incomplete or unsafe (no token, plain http to a remote host, ...).

    It is an ``AirflowFailException`` too, so the task fails without retries: a retry would read the
    same connection and fail the same way. The message says how to fix the connection.
    """


class CallbellAPIError(CallbellError):
    """Callbell answered with an error, an unexpected body, or could not be reached.

    :param message: what went wrong, for people.
    :param status_code: the HTTP status, or ``None`` when no answer arrived.
    :param endpoint: the method and path called, e.g. ``POST /messages/send``.
    :param body: the response body; only its first ``BODY_EXCERPT_CHARS`` characters are kept.
    :param maybe_acted_on: whether Callbell may have carried the request out despite the error (a
        send that may have gone out), kept as the attribute of that name. By default it follows from
        ``status_code``: yes for a ``2xx`` whose body was unusable, a ``500`` or no answer at all; no
        for a refusal (``4xx``, a redirect) or ``502``/``503``/``504``. The transport passes ``False``
        for a request that never reached Callbell (no connection could be made).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        endpoint: str = "",
        body: str = "",
        maybe_acted_on: bool | None = None,
    ) -> None:
        self.status_code = status_code  # Callbell's answer, or None when there was none
        self.reason = message
        self.endpoint = endpoint
        self.body = body[:BODY_EXCERPT_CHARS]
        self.maybe_acted_on = _maybe_acted_on(status_code) if maybe_acted_on is None else maybe_acted_on
        detail = f"{endpoint}: {message}" if endpoint else message
        if status_code is not None:
            detail = f"{detail} (HTTP {status_code})"
        if self.body:
            detail = f"{detail}; response body: {self.body!r}"
        super().__init__(detail)

    @property
    def is_transient(self) -> bool:
        """Whether asking again later may succeed: no answer at all, the rate limit, or a 5xx.

        No answer is :class:`CallbellNoAnswerError`; an error built without a status (an event from
        an older trigger, an unexpected failure in a bulk worker) is taken as one.

        Waiting code (the sensor, the trigger) keeps polling through these; anything else (a refused
        token, an unknown message, a malformed answer) will not get better by itself.
        """
        return self.status_code is None or self.status_code == 429 or self.status_code >= 500


def _maybe_acted_on(status_code: int | None) -> bool:
    """Whether an answer with this status leaves open that Callbell carried the request out.

    A success whose body could not be used (``2xx``), a ``500``, or no answer at all may hide a message
    that went out. ``502``/``503``/``504`` come from before the application (nothing was done), and a
    ``4xx`` or a redirect is a refusal.
    """
    if status_code is None:
        return True  # unknown how far the request got: assume the worst for at-most-once delivery
    return 200 <= status_code < 300 or (status_code >= 500 and status_code not in (502, 503, 504))


class CallbellNoAnswerError(CallbellAPIError):
    """No HTTP answer arrived: the connection failed, broke, or the attempt ran out of time.

    ``status_code`` is ``None``, and the error is transient: asking again later may succeed.
    ``maybe_acted_on`` is ``False`` only when the request is known not to have reached Callbell (no
    connection could be made); otherwise a send may have gone out.
    """

    @property
    def is_transient(self) -> bool:
        return True


class CallbellTimeoutError(CallbellNoAnswerError):
    """No complete answer within the connect timeout plus the read timeout of the attempt.

    The deadline covers the whole attempt, from connecting to the last byte of the answer, however
    slowly a server trickles it. A send may have gone out (``maybe_acted_on``).
    """


class CallbellConnectError(CallbellNoAnswerError):
    """No connection could be made to ``host``: refused, a host name that does not resolve, no route.

    Nothing was sent (``maybe_acted_on`` is ``False``). It is transient like any missing answer, but a
    sensor whose pokes never connected at all stops waiting after a short grace and fails with this
    error, naming the host: nothing listens there (a stopped sandbox, a wrong base URL).

    :param host: ``host:port`` of the base URL that could not be reached.
    """

    def __init__(
        self,
        message: str,
        *,
        host: str = "",
        status_code: int | None = None,
        endpoint: str = "",
        body: str = "",
    ) -> None:
        self.host = host
        super().__init__(message, status_code=status_code, endpoint=endpoint, body=body, maybe_acted_on=False)


class CallbellAuthError(CallbellAPIError):
    """401 or 403: the token in the connection is wrong, revoked, or lacks the permission."""


class CallbellRateLimitError(CallbellAPIError):
    """429: the account's limit of 300 requests per second was exceeded (after any retries).

    ``retry_after`` holds the seconds Callbell asked to wait (``Retry-After``), or ``None``.
    """

    retry_after: float | None = None


class CallbellServerError(CallbellAPIError):
    """5xx: Callbell failed; usually safe to retry after a delay."""


class CallbellInvalidResponseError(CallbellAPIError):
    """Callbell's answer cannot be used: not JSON, too large or too deeply nested, of the wrong shape,
    missing a field, with an unknown status, or pages that never end.

    ``status_code`` is the answer's when it is known (``None`` for a decoded answer of the wrong
    shape). It is not transient, unless its status is (a huge ``503`` page from a proxy): the same
    request would get the same answer. Such an answer rarely comes from Callbell; check the base URL.
    """

    @property
    def is_transient(self) -> bool:
        return self.status_code is not None and super().is_transient


class AirflowAPIError(CallbellAPIError):
    """Airflow's REST API (``airflow_api`` connection) refused a request, sent an unusable answer, or
    none: what :class:`~airflow_provider_callbell.operators.hitl.CallbellHITLResponseOperator` reads
    and submits a Human-in-the-loop answer through.

    Same attributes as every :class:`CallbellAPIError` (``status_code`` ``None`` when no answer came);
    ``body`` never holds the Airflow user's password or token. Transient as they are: no answer,
    ``429`` and ``5xx``.
    """


def api_error_class(status_code: int | None) -> type[CallbellAPIError]:
    """The exception class for an HTTP status, so that every code path maps statuses the same way."""
    if status_code in (401, 403):
        return CallbellAuthError
    if status_code == 429:
        return CallbellRateLimitError
    if status_code is not None and status_code >= 500:
        return CallbellServerError
    return CallbellAPIError


class CallbellMessageFailedError(CallbellError, AirflowFailException):
    """A sent message reached a failure status (``failed`` by default): it will not be delivered.

    It is an ``AirflowFailException`` too, so the task fails without retries: asking again cannot
    change a message's final status; only sending a new message can.

    :param uuid: the message's uuid.
    :param status: the status Callbell reported, e.g. ``failed``.
    :param reason: why, from the status's ``messageStatusPayload`` (``"no reason given"`` when empty).
    """

    def __init__(self, uuid: str, status: str, reason: str) -> None:
        self.uuid = uuid
        self.status = status
        self.reason = reason
        super().__init__(f"Callbell message {uuid} ended {status!r}: {reason}")


class CallbellBulkSendError(CallbellError):
    """Some messages of a bulk send failed after every message was attempted; the others were sent.

    :param message: how many failed and why.
    :param failed: how many messages failed.
    :param total: how many messages the send held.
    """

    def __init__(self, message: str, *, failed: int, total: int) -> None:
        self.failed = failed
        self.total = total
        super().__init__(message)


def error_event(err: CallbellError) -> dict[str, Any]:
    """A trigger's ``{"event": "error", ...}`` for ``err``: plain JSON that names its class.

    A trigger runs in the triggerer and hands the task only JSON; :func:`error_from_event` turns it
    back into the same type there, so that a configuration error still fails the task without retries.
    """
    if isinstance(err, CallbellAPIError):
        reason, status, endpoint, body = err.reason, err.status_code, err.endpoint, err.body
    else:
        reason, status, endpoint, body = str(err), None, "", ""
    return {
        "event": "error",
        "error_class": type(err).__name__,
        "reason": reason,
        "status_code": status,
        "endpoint": endpoint,
        "body": body,
    }


def error_from_event(event: dict[str, Any]) -> CallbellError:
    """The error an :func:`error_event` stands for, rebuilt in the task that resumes."""
    kind = _EVENT_ERRORS.get(event.get("error_class", ""))
    if kind is None or issubclass(kind, CallbellAPIError):  # no class: an event from an older trigger
        api_kind = kind or api_error_class(event["status_code"])
        return api_kind(
            event["reason"], status_code=event["status_code"], endpoint=event["endpoint"], body=event["body"]
        )
    return kind(event["reason"])


#: The errors a trigger reports, by name (a whitelist: an event never names a class to import).
_EVENT_ERRORS: dict[str, type[CallbellError]] = {
    cls.__name__: cls
    for cls in (
        CallbellError,
        CallbellValidationError,
        CallbellConnectionConfigError,
        CallbellAPIError,
        CallbellAuthError,
        CallbellRateLimitError,
        CallbellServerError,
        CallbellInvalidResponseError,
        CallbellNoAnswerError,
        CallbellTimeoutError,
        CallbellConnectError,
        AirflowAPIError,
    )
}
