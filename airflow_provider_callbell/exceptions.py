"""The exceptions this provider raises, rooted in ``AirflowException`` so any of them fails a task.

Callers branch on the type and on attributes (``status_code``, ``endpoint``, ``body``), never on the
message text. No message ever contains the API token: the token is never passed to these classes.
"""

from __future__ import annotations

from airflow_provider_callbell.version_compat import AirflowException

#: How much of a response body an error keeps: enough to read Callbell's reason, never a whole page.
BODY_EXCERPT_CHARS = 500


class CallbellError(AirflowException):
    """Base class of every error raised by the Callbell provider."""


class CallbellValidationError(CallbellError, ValueError):
    """A message or argument is invalid; raised before any request is sent."""


class CallbellConnectionConfigError(CallbellError, ValueError):
    """The Airflow connection is incomplete or unsafe (no token, plain http to a remote host, ...)."""


class CallbellAPIError(CallbellError):
    """Callbell answered with an error, an unexpected body, or could not be reached.

    :param message: what went wrong, for people.
    :param status_code: the HTTP status, or ``None`` when no answer arrived.
    :param endpoint: the method and path called, e.g. ``POST /messages/send``.
    :param body: the response body; only its first ``BODY_EXCERPT_CHARS`` characters are kept.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, endpoint: str = "", body: str = ""
    ) -> None:
        # AirflowException declares status_code as an HTTPStatus for Airflow's own API errors; here it
        # is Callbell's answer, or None when there was none.
        self.status_code = status_code  # type: ignore[assignment]
        self.endpoint = endpoint
        self.body = body[:BODY_EXCERPT_CHARS]
        detail = f"{endpoint}: {message}" if endpoint else message
        if status_code is not None:
            detail = f"{detail} (HTTP {status_code})"
        if self.body:
            detail = f"{detail}; response body: {self.body!r}"
        super().__init__(detail)


class CallbellAuthError(CallbellAPIError):
    """401 or 403: the token in the connection is wrong, revoked, or lacks the permission."""


class CallbellRateLimitError(CallbellAPIError):
    """429: the account's limit of 300 requests per second was exceeded (after any retries).

    ``retry_after`` holds the seconds Callbell asked to wait (``Retry-After``), or ``None``.
    """

    retry_after: float | None = None


class CallbellServerError(CallbellAPIError):
    """5xx: Callbell failed; usually safe to retry after a delay."""


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
