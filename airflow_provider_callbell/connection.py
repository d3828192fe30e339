"""The Callbell connection: how it is defined, shown in the Connections UI, and read into settings.

Everything the provider knows about an Airflow connection of type ``callbell`` lives here: the
form's widgets and field behaviour, the merge of the hook's arguments with the connection's extras
and the defaults, the rules for the token, the base URL and the timeouts, and the errors that say
how to define or fix a connection. The hook reads a connection once and keeps the resulting
:class:`CallbellSettings`; the transports and the API methods read only those.

Nothing here does I/O or imports an HTTP library, so the rules are testable with a plain
``Connection`` object, without a hook or a network.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_callbell.exceptions import CallbellConnectionConfigError
from airflow_provider_callbell.get_provider_info import CONN_FIELDS, DEFAULT_BASE_URL, UI_FIELD_BEHAVIOUR
from airflow_provider_callbell.retry import RetryPolicy
from airflow_provider_callbell.transport.caps import url_secrets
from airflow_provider_callbell.validation import DEFAULT_CHANNEL
from airflow_provider_callbell.version_compat import AIRFLOW_V_3_0_PLUS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from airflow_provider_callbell.version_compat import Connection

#: The connection type, as Airflow stores it and as the Airflow 2 form prefixed its extras.
CONN_TYPE = "callbell"
#: (connect, read) seconds: connecting should be quick; Callbell may take a while to answer a send.
#: Their sum is the deadline of each attempt, from connecting to the last byte of the answer.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)
#: What the connection's ``schema`` may hold besides a path: the URL scheme, as in Airflow's HTTP hook.
_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class CallbellSettings:
    """A connection as the provider uses it: read once per hook and merged with the hook's arguments.

    Build it with :meth:`from_connection`, which checks every rule; the token is kept out of its
    ``repr``, so a settings object in a log line or a traceback never shows it.
    """

    base_url: str
    token: str = field(repr=False)  # never in a log line or a traceback
    from_: str
    channel_uuid: str | None
    timeout: tuple[float, float]
    retry: RetryPolicy
    #: A ``limits`` storage URI: the account's rate limit is kept there, shared by every process.
    rate_limit_storage: str | None = field(default=None, repr=False)  # may hold the storage's password
    #: The storage's password, kept apart from the URI: Airflow masks an extra whose name says
    #: "password", and the URI is merged with it only where the storage is made (``ratelimit.py``).
    rate_limit_storage_password: str | None = field(default=None, repr=False)
    #: Whether plain ``http://`` is allowed to a host that is not loopback (a sandbox on a trusted network).
    allow_plain_http: bool = False

    @property
    def budget(self) -> float:
        """The most one attempt of a request may take: the connect timeout plus the read timeout."""
        return sum(self.timeout)

    @property
    def at_api_root(self) -> bool:
        """Whether the base URL ends with ``/v1``, where Callbell's API lives.

        A ``404`` from any other root is a configuration mistake, not an unknown contact or message.
        """
        return urlsplit(self.base_url).path.endswith("/v1")

    @classmethod
    def from_connection(
        cls,
        conn_id: str,
        conn: Connection,
        extras: Mapping[str, Any],
        *,
        timeout: float | tuple[float, float] | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> CallbellSettings:
        """The hook's arguments first, then the connection's extras, then the defaults.

        Every problem found here is a :class:`CallbellConnectionConfigError` that names the
        connection and says how to fix it; it fails the task without retries. Airflow registers the
        password with its secrets masker when it reads the connection.

        :param conn_id: the connection's id, for the messages.
        :param conn: the connection (its password, host, port and schema are read).
        :param extras: its extras, already parsed (``extra_dejson``).
        :param timeout: the hook's ``timeout`` argument, which overrides the timeout extras.
        :param retry_policy: the hook's ``retry_policy`` argument, which overrides the retry extras.
        """
        token = _token(conn_id, conn.password)
        # The Airflow 2 UI stored extras as "extra__callbell__<name>"; accept both spellings, and
        # treat a field left empty in the form (stored as "" or null) as unset.
        prefix = f"extra__{CONN_TYPE}__"
        extra = {k.removeprefix(prefix): v for k, v in extras.items() if v not in ("", None)}
        try:
            from_extras = timeouts(None, extra)
            retry = RetryPolicy.from_extras(extra) if retry_policy is None else retry_policy
            storage = _storage_uri(extra.get("rate_limit_storage"))
            storage_password = _storage_password(storage, extra.get("rate_limit_storage_password"))
            plain_http = _flag("allow_plain_http", extra.get("allow_plain_http", False))
        except CallbellConnectionConfigError as err:
            raise CallbellConnectionConfigError(
                f'Connection {conn_id!r}: {err}; fix it in the Connections UI or in the "extra" JSON '
                f"of the connection (e.g. in {env_var(conn_id)})"
            ) from None
        return cls(
            base_url=base_url(conn_id, conn.host, conn.port, conn.schema, allow_plain_http=plain_http),
            token=token,
            from_=extra.get("from") or DEFAULT_CHANNEL,
            channel_uuid=extra.get("channel_uuid"),
            timeout=from_extras if timeout is None else timeouts(timeout, {}),
            retry=retry,
            rate_limit_storage=storage,
            rate_limit_storage_password=storage_password,
            allow_plain_http=plain_http,
        )

    @property
    def plain_http_to_network(self) -> bool:
        """Whether the token travels unencrypted beyond this machine (``allow_plain_http`` in use)."""
        parts = urlsplit(self.base_url)
        return parts.scheme == "http" and not is_loopback(parts.hostname or "")


def _token(conn_id: str, password: str | None) -> str:
    """The API token of a connection's password, checked so that HTTP can carry it."""
    # A token pasted from a file often ends in a line break; it is never part of the token.
    token = (password or "").strip()
    if not token:
        raise CallbellConnectionConfigError(
            f'Connection {conn_id!r} has no API token: set its password ("API token" in the '
            f"Connections UI) to the API key made in Callbell's dashboard, or {how_to_define(conn_id)}"
        )
    if not (token.isascii() and token.isprintable()) or " " in token:
        # Checked here, because HTTP would refuse the header with an error quoting the token.
        raise CallbellConnectionConfigError(
            f"Connection {conn_id!r}: the API token holds a space, a line break or a non-ASCII "
            "character, which no Callbell API key has; paste the key from Callbell's dashboard "
            'into its password ("API token" in the Connections UI) again'
        )
    return token


# -- Defining a connection ------------------------------------------------------------------------


def env_var(conn_id: str) -> str:
    """The environment variable that defines ``conn_id``."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def how_to_define(conn_id: str) -> str:
    """The two ways to define a Callbell connection from a shell, for error messages."""
    return (
        f"define it with `airflow connections add {conn_id} --conn-type {CONN_TYPE} --conn-password "
        f"<API token>` or with the environment variable {env_var(conn_id)}="
        f"""'{{"conn_type": "{CONN_TYPE}", "password": "<API token>"}}'"""
    )


def missing_connection(conn_id: str) -> CallbellConnectionConfigError:
    """The error for a connection id Airflow does not know, with the way to create it.

    On Airflow 3 it also says why a connection stored in the database may look missing: code that
    runs outside a task (a Python shell, a script) does not reach the database through the task SDK.
    """
    message = f"Connection {conn_id!r} is not defined: {how_to_define(conn_id)}"
    if AIRFLOW_V_3_0_PLUS:
        message += (
            " (outside a task, Airflow 3 reads connections from environment variables and secrets "
            "backends only, not from its database)"
        )
    return CallbellConnectionConfigError(message)


# -- The Connections UI ---------------------------------------------------------------------------


def ui_field_behaviour() -> dict[str, Any]:
    """Hide the fields Callbell does not use and call the password what it is: the API token."""
    return {
        "hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"],
        "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
        "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
    }


def connection_form_widgets() -> dict[str, Any]:
    """Offer the extras as form fields, for Airflow before 3.2 (3.2+ reads ``conn-fields``).

    Each field follows its ``conn-fields`` schema type. Airflow accepts only ``StringField``,
    ``IntegerField``, ``PasswordField`` and ``BooleanField`` here and drops the whole connection
    type for any other class, so a ``number`` (seconds, which may be fractional) is a text field
    that must hold a decimal number. Airflow 2.x renders the form with Flask-AppBuilder, so there
    the fields get its Bootstrap widget and translatable labels, as the official providers' do.
    """
    from wtforms import IntegerField, StringField

    # any_of, not its alias AnyOf: Airflow 3.0/3.1's API server reads the choices through a mock of it.
    from wtforms.validators import NumberRange, Optional, Regexp, any_of

    label: Callable[[str], Any] = str
    widget: dict[str, Any] = {}
    if not AIRFLOW_V_3_0_PLUS:
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext

        label = lazy_gettext
        widget = {"widget": BS3TextFieldWidget()}

    def form_field(spec: Mapping[str, Any]) -> Any:
        kind = spec["schema"]["type"][0]
        args = (label(spec["label"]),)
        kwargs = {"description": spec["description"], "default": spec["schema"].get("default"), **widget}
        if kind == "integer":
            return IntegerField(*args, validators=[Optional(), NumberRange(min=0)], **kwargs)
        if kind == "number":
            decimal = Regexp(r"^\s*\d+(\.\d+)?\s*$", message="Enter a number such as 10 or 2.5")
            return StringField(*args, validators=[Optional(), decimal], **kwargs)
        choices = [value for value in spec["schema"].get("enum", []) if value is not None]
        return StringField(*args, validators=[Optional(), any_of(choices)] if choices else [], **kwargs)

    return {name: form_field(spec) for name, spec in CONN_FIELDS.items()}


# -- The base URL ---------------------------------------------------------------------------------


def base_url(
    conn_id: str, host: str | None, port: int | None, schema: str | None, *, allow_plain_http: bool = False
) -> str:
    """Build the API root from the connection's host, port and schema, and check that it is safe.

    The host may be a whole base URL (``https://api.callbell.eu/v1``) or a bare host name; the
    connection's port and schema fill in what the host leaves out. ``schema`` is read the two ways
    Airflow fills it: ``http``/``https`` is the URL scheme (as for Airflow's HTTP connections, and
    ``--conn-schema http``); anything else is the path that Airflow's URI parsing puts there
    (``callbell://:TOKEN@api.callbell.eu/v1`` gives schema ``v1``). A value given twice that
    disagrees (two ports, two schemes, two paths) is refused rather than one silently winning.

    Plain http is accepted only for loopback addresses, so a local sandbox works and a typo cannot
    send the token in clear text, unless ``allow_plain_http`` (the connection extra, for a sandbox on
    a trusted network such as a docker-compose service) says otherwise; a loopback host without a
    scheme is refused with the ``http://`` form to use, as guessing https there fails later with a
    TLS error that explains nothing.
    """
    given = (host or "").strip() or DEFAULT_BASE_URL

    def refuse(problem: str) -> CallbellConnectionConfigError:
        return CallbellConnectionConfigError(
            f'Connection {conn_id!r}: {problem}; set its host ("Base URL" in the Connections UI) to an '
            f"http(s) URL such as {DEFAULT_BASE_URL!r}"
        )

    if "@" in given:  # user info: never print it, it may hold the token
        raise refuse(
            "the host holds user info ('user:password@'), which is never sent as Callbell's token "
            "and must not be in a URL; put the API token in the connection's password"
        )
    try:
        parts = urlsplit(given if "://" in given else f"//{given}")
        hostname, host_port = parts.hostname, parts.port
    except ValueError:
        raise refuse(f"the host {given!r} is not a URL") from None
    scheme, path = parts.scheme.lower(), parts.path.rstrip("/")
    if parts.query or parts.fragment or not hostname or (scheme and scheme not in _SCHEMES):
        raise refuse(f"the host {given!r} is not an http(s) base URL")
    if schema and schema.lower() in _SCHEMES:
        if scheme and scheme != schema.lower():
            raise refuse(f"the host {given!r} says {scheme!r} but the schema field says {schema!r}")
        scheme = schema.lower()
    elif schema:
        if path:
            raise refuse(f"the host {given!r} has a path and the schema field adds {schema!r}")
        path = "/" + schema.strip("/")
    if port:
        if host_port is not None and host_port != port:
            raise refuse(f"the host {given!r} says port {host_port} but the port field says {port}")
        host_port = port
    loopback = is_loopback(hostname)
    if not scheme and loopback:
        raise refuse(
            f"the host {given!r} has no scheme; a local server such as the sandbox is plain http: "
            f"use {urlunsplit(('http', netloc(hostname, host_port), path, '', ''))!r}"
        )
    scheme = scheme or "https"
    if scheme == "http" and not loopback and not allow_plain_http:
        raise refuse(
            f"the host {given!r} uses plain http, which would send the API token unencrypted; use https "
            "(plain http is accepted only for localhost / 127.0.0.1, or with the extra "
            '"allow_plain_http": true for a sandbox on a trusted network)'
        )
    if host_port == _DEFAULT_PORTS[scheme]:  # e.g. 443 typed in the form's port field: same URL
        host_port = None
    return urlunsplit((scheme, netloc(hostname, host_port), path, "", ""))


def netloc(hostname: str, port: int | None) -> str:
    """``host:port`` for a URL (the Airflow API connection builds its URL with it too)."""
    name = f"[{hostname}]" if ":" in hostname else hostname  # an IPv6 address needs its brackets
    return f"{name}:{port}" if port else name


def is_loopback(hostname: str) -> bool:
    """Whether plain http to ``hostname`` stays on this machine (``localhost`` or a loopback address)."""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


# -- The shared rate limit and plain http -------------------------------------------------------------


def _storage_uri(value: Any) -> str | None:
    """The ``rate_limit_storage`` extra: a ``limits`` storage URI such as ``redis://redis:6379/1``.

    Only its form is checked here (no import, no I/O); the storage itself is made on the first request.
    The value is never quoted in an error, as it may hold the storage's password.
    """
    if value is None:
        return None
    if not isinstance(value, str) or "://" not in value or not value.split("://", 1)[0]:
        raise CallbellConnectionConfigError(
            "extra 'rate_limit_storage' must be a storage URI of the limits library such as "
            "'redis://redis:6379/1'"
        )
    return value.strip()


def _storage_password(storage: str | None, value: Any) -> str | None:
    """The ``rate_limit_storage_password`` extra: the storage's password, never quoted in an error.

    It needs a storage, and a URI without a password of its own (one password, in one place).
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise CallbellConnectionConfigError("extra 'rate_limit_storage_password' must be a string")
    if storage is None:
        raise CallbellConnectionConfigError(
            "extra 'rate_limit_storage_password' is set but 'rate_limit_storage' is not; set both"
        )
    if url_secrets(storage):
        raise CallbellConnectionConfigError(
            "extra 'rate_limit_storage' holds a password and 'rate_limit_storage_password' is set too; "
            "keep the password in 'rate_limit_storage_password' only"
        )
    return value


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _flag(name: str, value: Any) -> bool:
    """A yes/no extra: JSON ``true``/``false``, or the words a form or an environment variable may store."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise CallbellConnectionConfigError(f"extra {name!r} must be true or false, got {value!r}")


# -- Timeouts -------------------------------------------------------------------------------------


def timeouts(argument: float | tuple[float, float] | None, extra: Mapping[str, Any]) -> tuple[float, float]:
    """(connect, read): the hook's argument, else the extras, else :data:`DEFAULT_TIMEOUT`."""
    if isinstance(argument, (list, tuple)):
        return _seconds("timeout[0]", argument[0]), _seconds("timeout[1]", argument[1])
    if argument is not None:
        seconds = _seconds("timeout", argument)
        return seconds, seconds
    connect, read = DEFAULT_TIMEOUT
    if "timeout" in extra:
        connect = read = _seconds("extra 'timeout'", extra["timeout"])
    if "connect_timeout" in extra:
        connect = _seconds("extra 'connect_timeout'", extra["connect_timeout"])
    if "read_timeout" in extra:
        read = _seconds("extra 'read_timeout'", extra["read_timeout"])
    return connect, read


def _seconds(name: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0:
        raise CallbellConnectionConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds
