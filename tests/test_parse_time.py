"""Literal message fields are checked when a DAG file is parsed: a wrong one is a DAG import error."""

from __future__ import annotations

import textwrap
from datetime import datetime

import pytest

from airflow_provider_callbell.exceptions import CallbellValidationError
from airflow_provider_callbell.notifications.callbell import CallbellNotifier
from airflow_provider_callbell.operators.callbell import (
    CallbellSendMessageOperator,
    CallbellSendMessagesOperator,
)
from airflow_provider_callbell.sensors.callbell import CallbellMessageStatusSensor
from airflow_provider_callbell.validation import MESSAGE_FIELDS, build_send_payload
from tests.compat import DAG, DagBag, modules_added_by

TEXT = {"text": "Hi"}
UUID = "adf3d1216d4c4dcd908199d6700f2381"

#: One wrong literal per message field, with a valid message around it.
BAD_LITERALS = [
    pytest.param({"to": "0612345678"}, "to", id="to-national"),
    pytest.param({"type": "txt"}, "type", id="type"),
    pytest.param({"content": "Hello"}, "content", id="content"),
    pytest.param({"from_": "whatsap"}, "from", id="from_"),
    pytest.param({"bsuid": " "}, "bsuid", id="bsuid"),
    pytest.param({"channel_uuid": ""}, "channel_uuid", id="channel_uuid"),
    pytest.param({"template_uuid": "t", "optin_contact": False}, "optin_contact", id="optin_contact"),
    pytest.param({"template_uuid": ""}, "template_uuid", id="template_uuid"),
    pytest.param({"template_values": ["a"]}, "template_uuid", id="template_values-without-template"),
    pytest.param(
        {"template_uuid": "t", "optin_contact": True, "template_values": "John"},
        "template_values",
        id="template_values",
    ),
    pytest.param({"assigned_user": "bob"}, "assigned_user", id="assigned_user"),
    pytest.param({"team_uuid": ""}, "team_uuid", id="team_uuid"),
    pytest.param({"fields": "contacts"}, "fields", id="fields"),
    pytest.param({"bot_status": "bot_stop"}, "bot_status", id="bot_status"),
    pytest.param({"metadata": {"order": 42}}, "metadata['order']", id="metadata"),
]


def run_time_error(**fields):
    with pytest.raises(CallbellValidationError) as excinfo:
        build_send_payload(**{"from_": "whatsapp", **fields})
    return str(excinfo.value)


class TestOperator:
    @pytest.mark.parametrize(("fields", "field"), BAD_LITERALS)
    def test_a_wrong_literal_fails_with_the_run_time_message(self, fields, field):
        message = {"to": "+31612345678", "content": TEXT, "from_": "whatsapp", **fields}
        with pytest.raises(CallbellValidationError) as excinfo:
            CallbellSendMessageOperator(task_id="send", **message)
        assert str(excinfo.value) == f"task 'send': {run_time_error(**message)}"
        assert str(excinfo.value).startswith(f"task 'send': {field} ")

    def test_every_message_field_has_a_wrong_literal_here(self):
        named = {name for param in BAD_LITERALS for name in param.values[0]}
        assert named == set(MESSAGE_FIELDS)

    def test_the_error_shows_the_fix(self):
        with pytest.raises(CallbellValidationError, match=r"did you mean '\+31612345678'\?"):
            CallbellSendMessageOperator(task_id="send", to="0031612345678", content=TEXT)

    @pytest.mark.parametrize(
        "fields",
        [
            pytest.param({"to": "{{ var.value.on_call }}"}, id="templated-to"),
            pytest.param({"to": "{% if true %}x{% endif %}"}, id="jinja-statement"),
            pytest.param(
                {"type": "{{ params.kind }}", "content": {"url": "https://example.com/a.png"}},
                id="templated-type",
            ),
            pytest.param({"content": '{"text": "{{ ds }}"}'}, id="templated-json-content"),
            pytest.param({"content": {"text": "{{ ds }}"}}, id="templated-content-text"),
            pytest.param(
                {"metadata": {"run": "{{ run_id }}", "n": "{{ ti.try_number }}"}}, id="templated-metadata"
            ),
            pytest.param({"from_": "{{ params.channel }}", "to": "tg_42"}, id="templated-channel"),
            pytest.param(
                {"template_uuid": "{{ var.value.t }}"}, id="templated-template-without-optin-checked-later"
            ),
        ],
    )
    def test_templated_fields_wait_for_rendering(self, fields):
        message = {"to": "+31612345678", "content": TEXT, **fields}
        if "template_uuid" in fields:
            message["optin_contact"] = True
        operator = CallbellSendMessageOperator(task_id="send", **message)
        assert all(getattr(operator, name) == value for name, value in message.items())

    def test_keys_of_a_templated_content_are_still_checked(self):
        with pytest.raises(CallbellValidationError, match=r"^task 'send': content has an unknown key 'txt'"):
            CallbellSendMessageOperator(task_id="send", to="+31612345678", content={"txt": "{{ ds }}"})

    def test_xcom_args_wait_for_their_value(self):
        with DAG("parse_time_xcom", schedule=None, start_date=datetime(2026, 1, 1)):
            upstream = CallbellSendMessageOperator(task_id="first", to="+31612345678", content=TEXT)
            second = CallbellSendMessageOperator(
                task_id="second",
                to=upstream.output,
                content={"text": upstream.output},
                metadata=upstream.output,
            )
        assert second.to is not None

    @pytest.mark.parametrize(
        ("to", "ok"),
        [
            pytest.param("12345", True, id="bare-digits-may-be-a-telegram-id"),
            pytest.param("-1001234567890", True, id="telegram-group-id"),
            pytest.param("tg_4242", True, id="platform-id"),
            pytest.param("0612345678", False, id="leading-0"),
            pytest.param("+31 6 12", False, id="plus-too-short"),
            pytest.param("06 1234 5678", False, id="spaces"),
            pytest.param("+٣١٦١٢٣٤٥٦٧٨", False, id="arabic-indic-digits"),
        ],
    )
    def test_without_from_the_channel_is_the_connections(self, to, ok):
        """The channel comes from the connection at run time; what can only be a phone number is checked."""
        if ok:
            CallbellSendMessageOperator(task_id="send", to=to, content=TEXT)
        else:
            with pytest.raises(CallbellValidationError, match=r"^task 'send': to must be a phone number"):
                CallbellSendMessageOperator(task_id="send", to=to, content=TEXT)
        with pytest.raises(CallbellValidationError, match="international format"):
            CallbellSendMessageOperator(task_id="send", to=to, from_="whatsapp", content=TEXT)

    def test_mapped_operators_still_expand(self):
        with DAG("parse_time_mapped", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
            upstream = CallbellSendMessageOperator(task_id="first", to="+31612345678", content=TEXT)
            CallbellSendMessageOperator.partial(task_id="by_to", content=TEXT).expand(
                to=["+31612345678", "+31687654321"]
            )
            CallbellSendMessageOperator.partial(task_id="by_xcom", content=TEXT).expand(to=upstream.output)
            CallbellSendMessageOperator.partial(task_id="by_kwargs").expand_kwargs(
                [{"to": "+31612345678", "content": TEXT}]
            )
        assert {"by_to", "by_xcom", "by_kwargs"} <= set(dag.task_ids)


class TestBulkOperator:
    def test_literal_fields_of_message_are_checked(self):
        with pytest.raises(
            CallbellValidationError, match=r"^task 'bulk': message: type .*did you mean 'image'\?"
        ):
            CallbellSendMessagesOperator(
                task_id="bulk",
                recipients=["+31612345678"],
                message={"type": "imgae", "content": {"url": "x"}},
            )

    def test_a_json_message_is_checked_field_by_field(self):
        with pytest.raises(
            CallbellValidationError, match=r"^task 'bulk': message: content has an unknown key 'txt'"
        ):
            CallbellSendMessagesOperator(
                task_id="bulk",
                recipients=["+31612345678"],
                message='{"content": {"txt": "Hi {{ recipient.name }}"}}',
            )
        # message is not a template field: a string that is not JSON now never will be.
        with pytest.raises(CallbellValidationError, match=r"^message must be an object or a JSON object"):
            CallbellSendMessagesOperator(
                task_id="bulk", recipients=["+31612345678"], message="{{ var.json.m }}"
            )

    def test_per_recipient_templates_wait(self):
        operator = CallbellSendMessagesOperator(
            task_id="bulk",
            recipients="{{ ti.xcom_pull('rows') }}",
            message={"content": {"text": "Hi {{ recipient.name }}"}, "from": "whatsapp"},
        )
        assert operator.message["from"] == "whatsapp"

    @pytest.mark.parametrize("rate", [0, 0.01, -1, float("inf"), float("nan"), 1e-300, 20_000, True, "300"])
    def test_max_rps_is_finite_and_sensible(self, rate):
        with pytest.raises(
            CallbellValidationError,
            match=r"^task 'bulk': max_rps must be a number of requests per second from 0\.1",
        ):
            CallbellSendMessagesOperator(task_id="bulk", messages=[], max_rps=rate)


class TestNotifier:
    def test_a_wrong_literal_number_fails_at_parse_time(self):
        with pytest.raises(
            CallbellValidationError, match=r"^CallbellNotifier: to must be a phone number.*'\+31 612345678'"
        ):
            CallbellNotifier(to="0612345678")

    def test_with_the_channel_given_every_number_is_checked(self):
        with pytest.raises(CallbellValidationError, match=r"^CallbellNotifier: to must be a phone number"):
            CallbellNotifier(to="12345", from_="whatsapp")

    def test_no_content_means_the_summary(self):
        assert CallbellNotifier(to="+31612345678").content is None

    def test_templated_recipient_waits(self):
        assert CallbellNotifier(to="{{ var.value.on_call }}", content={"text": "{{ ds }}"}).to


class TestSensor:
    def test_a_wrong_literal_uuid_fails_at_parse_time(self):
        with pytest.raises(CallbellValidationError, match=r"^task 'wait': message_uuid must be a Callbell"):
            CallbellMessageStatusSensor(task_id="wait", message_uuid="../auth/me")

    def test_templated_and_xcom_uuids_wait(self):
        with DAG("parse_time_sensor", schedule=None, start_date=datetime(2026, 1, 1)):
            send = CallbellSendMessageOperator(task_id="send", to="+31612345678", content=TEXT)
            CallbellMessageStatusSensor(task_id="a", message_uuid=send.output)
            CallbellMessageStatusSensor(task_id="b", message_uuid="{{ ti.xcom_pull('send') }}")
        CallbellMessageStatusSensor(task_id="c", message_uuid=UUID)


def test_a_dag_file_with_a_wrong_literal_is_an_import_error(tmp_path):
    (tmp_path / "bad_number.py").write_text(
        textwrap.dedent(
            """
            from datetime import datetime
            from airflow_provider_callbell.notifications.callbell import CallbellNotifier
            from airflow_provider_callbell.operators.callbell import CallbellSendMessageOperator
            from tests.compat import DAG

            with DAG("bad_number", schedule=None, start_date=datetime(2026, 1, 1),
                     on_failure_callback=CallbellNotifier(to="+31612345678")):
                CallbellSendMessageOperator(task_id="tell", to="0612345678", content={"text": "Hi"})
            """
        )
    )
    bag = DagBag(dag_folder=str(tmp_path), safe_mode=False)
    assert "bad_number" not in bag.dag_ids
    [error] = bag.import_errors.values()
    assert "task 'tell': to must be a phone number in international format" in error


def test_parse_time_checks_import_nothing_heavy():
    watched = ["requests", "httpx", "difflib", "airflow_provider_callbell.hooks.callbell"]
    modules = ",".join(
        f"airflow_provider_callbell.{name}.callbell" for name in ("operators", "notifications", "sensors")
    )
    assert modules_added_by(modules, watched) == []


def test_importing_leaves_the_rules_to_the_first_check():
    """A DAG file that imports the operators, the notifier or the sensors pays for the rules (and the
    reply rule, the notifier's summary) only when it builds one: ``make bench``'s import cost."""
    watched = [
        "airflow_provider_callbell.validation",
        "airflow_provider_callbell.replies",
        "airflow_provider_callbell.callback_events",
    ]
    modules = ",".join(
        f"airflow_provider_callbell.{name}.callbell" for name in ("operators", "notifications", "sensors")
    )
    assert modules_added_by(modules, watched) == []
