"""A bulk send's messages: read from a list or JSON, or rendered from one message for each recipient.

:class:`~airflow_provider_callbell.operators.callbell.CallbellSendMessagesOperator` imports this when
it checks its ``message`` at parse time or sends at run time, never with its module: a DAG file pays
for the operator only. Jinja templates are compiled once per send and rendered per recipient without
copying the task's context.
"""

from __future__ import annotations

import json
from collections import ChainMap
from typing import TYPE_CHECKING, Any, cast

from airflow_provider_callbell.exceptions import CallbellValidationError
from airflow_provider_callbell.fields import MESSAGE_FIELDS, RECIPIENT_KEYS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping

    from jinja2 import Environment, Template


def render_for_recipients(
    message: Any, recipients: Any, make_env: Callable[[], Environment], context: Mapping[str, Any]
) -> Iterator[Mapping[str, Any]]:
    """``message`` rendered for each of ``recipients``, with ``recipient`` in the task's context.

    :param make_env: the Jinja environment to compile ``message`` with (the DAG's).
    :raises CallbellValidationError: ``message`` is no valid template, or fails to render for one
        recipient (then nothing was sent: every message is rendered before the first is sent).
    """
    from jinja2 import TemplateError

    try:
        render = _compile(message_template(message), make_env())
    except TemplateError as err:
        raise CallbellValidationError(f"message is not a valid template: {err}") from None
    for index, value in enumerate(json_list("recipients", recipients)):
        recipient = _recipient(index, value)
        try:
            rendered = render(ChainMap({"recipient": recipient}, cast("MutableMapping[str, Any]", context)))
        except TemplateError as err:
            raise CallbellValidationError(
                f"message could not be rendered for recipients[{index}]: {err}; nothing was sent"
            ) from None
        rendered.update({key: recipient[key] for key in RECIPIENT_KEYS if recipient.get(key) is not None})
        yield rendered


def json_list(name: str, value: Any) -> Iterable[Any]:
    """A list as given (or any iterable, such as a resolved XComArg), or parsed from a JSON list."""
    value = _from_json(name, value, "a list or a JSON list")
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") or hasattr(value, "keys"):
        raise CallbellValidationError(f"{name} must be a list or a JSON list, got {type(value).__name__}")
    return cast("Iterable[Any]", value)


def message_template(message: Any) -> dict[str, Any]:
    """Check the per-recipient message: a dict of message fields, the recipient's identity excepted."""
    message = _from_json("message", message, "an object or a JSON object")
    if not isinstance(message, dict):
        raise CallbellValidationError(f"message must be an object of message fields, got {message!r}")
    allowed = set(MESSAGE_FIELDS) - set(RECIPIENT_KEYS) | {"from"}
    for key in message:
        if key in RECIPIENT_KEYS:
            raise CallbellValidationError(
                f"message must not contain {key!r}: each recipient gives its own (recipients=[{{{key!r}: ...}}])"
            )
        if key not in allowed:
            raise CallbellValidationError(
                f"{key!r} is not a message field; expected {', '.join(sorted(allowed))}"
            )
    return message


def _from_json(name: str, value: Any, expected: str) -> Any:
    """``value`` as given, or parsed when it is JSON text (a templated field renders to text)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise CallbellValidationError(f"{name} must be {expected}, got {value[:200]!r}") from None


def _recipient(index: int, value: Any) -> dict[str, Any]:
    """A recipient as a dict with ``to`` or ``bsuid``: a bare string is a ``to``."""
    if isinstance(value, str):
        return {"to": value}
    if isinstance(value, dict) and any(value.get(key) is not None for key in RECIPIENT_KEYS):
        return value
    raise CallbellValidationError(
        f"recipients[{index}] must be a phone number or platform id, or an object with 'to' or 'bsuid', "
        f"got {value!r}"
    )


def _compile(template: Any, env: Environment) -> Callable[[Mapping[str, Any]], Any]:
    """Compile every Jinja string of ``template`` once; the result renders the whole structure."""
    if isinstance(template, str):
        if "{{" not in template and "{%" not in template:
            return lambda _: template
        compiled = env.from_string(template)
        return lambda scope: _render(compiled, scope)
    if isinstance(template, dict):
        parts = {key: _compile(value, env) for key, value in template.items()}
        return lambda scope: {key: part(scope) for key, part in parts.items()}
    if isinstance(template, (list, tuple)):
        items = [_compile(value, env) for value in template]
        return lambda scope: [item(scope) for item in items]
    return lambda _: template


def _render(template: Template, scope: Mapping[str, Any]) -> Any:
    """``template.render(scope)`` without copying ``scope`` into a dict, as Airflow renders fields.

    The task's context is looked up only for the names the template uses: it is not copied once per
    recipient, and Airflow 2's context does not warn about every deprecated key it holds.
    """
    context = template.new_context(ChainMap(scope, template.globals), shared=True)  # type: ignore[arg-type]
    try:
        return template.environment.concat(template.root_render_func(context))
    except Exception:
        return template.environment.handle_exception()
