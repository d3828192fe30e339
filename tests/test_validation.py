from __future__ import annotations

import json

import pytest

from airflow_provider_callbell.exceptions import CallbellError, CallbellValidationError
from airflow_provider_callbell.validation import build_send_payload, validate_uuid

URL = "https://example.com/my_image.jpeg"


class TestDocumentedExamples:
    """Callbell's documented request bodies must come out as the very same JSON."""

    @pytest.mark.parametrize(
        ("kwargs", "documented"),
        [
            pytest.param(
                {"type": "text", "content": {"text": "Hello!"}},
                '{"to": "+31612345678", "from": "whatsapp", "type": "text", "content": {"text": "Hello!"}}',
                id="text",
            ),
            pytest.param(
                {"type": "image", "content": {"url": URL}},
                f'{{"to": "+31612345678", "from": "whatsapp", "type": "image", "content": {{"url": "{URL}"}}}}',
                id="image",
            ),
            pytest.param(
                {"type": "image", "content": {"url": URL, "text": "This is my caption"}},
                '{"to": "+31612345678", "from": "whatsapp", "type": "image", '
                f'"content": {{"url": "{URL}", "text": "This is my caption"}}}}',
                id="image-with-caption",
            ),
            pytest.param(
                {"type": "document", "content": {"url": "https://example.com/my_image.pdf"}},
                '{"to": "+31612345678", "from": "whatsapp", "type": "document", '
                '"content": {"url": "https://example.com/my_image.pdf"}}',
                id="document",
            ),
            pytest.param(
                {"type": "audio", "content": {"url": "https://example.com/my_audio.mp3"}},
                '{"to": "+31612345678", "from": "whatsapp", "type": "audio", '
                '"content": {"url": "https://example.com/my_audio.mp3"}}',
                id="audio",
            ),
            pytest.param(
                {"type": "video", "content": {"url": "https://example.com/my_video.mp4"}},
                '{"to": "+31612345678", "from": "whatsapp", "type": "video", '
                '"content": {"url": "https://example.com/my_video.mp4"}}',
                id="video",
            ),
        ],
    )
    def test_same_json_as_docs(self, kwargs, documented):
        payload = build_send_payload("+31612345678", from_="whatsapp", **kwargs)
        assert json.dumps(payload) == documented

    def test_template_message(self):
        payload = build_send_payload(
            "+31612345678",
            type="text",
            content={"text": "John"},
            template_uuid="d980fb66fd5043d3ace1aa06ba044342",
            optin_contact=True,
        )
        assert payload == {
            "to": "+31612345678",
            "from": "whatsapp",
            "type": "text",
            "content": {"text": "John"},
            "template_uuid": "d980fb66fd5043d3ace1aa06ba044342",
            "optin_contact": True,
        }

    def test_media_template_with_values(self):
        payload = build_send_payload(
            "+31612345678",
            type="document",
            content={"url": "https://example.com/invoice.pdf", "text": "John"},
            template_uuid="d980fb66fd5043d3ace1aa06ba044342",
            optin_contact=True,
            template_values=["John", "#123"],
        )
        assert payload["content"] == {"url": "https://example.com/invoice.pdf", "text": "John"}
        assert payload["template_values"] == ["John", "#123"]

    def test_template_values_without_content_text(self):
        payload = build_send_payload(
            "+31612345678",
            type="text",
            content={},
            template_uuid="abc",
            optin_contact=True,
            template_values=["a", "b"],
        )
        assert payload["content"] == {}


class TestOptionalFields:
    def test_every_optional_field_is_passed_through(self):
        payload = build_send_payload(
            "+31612345678",
            type="text",
            content={"text": "Hi"},
            from_="whatsapp",
            bsuid="US.13491208655302741918",
            channel_uuid="b3f0c7f6a1e14d2e9b9f0c8a7d6e5f4c",
            assigned_user="ops@example.com",
            team_uuid="4c1a2b3c4d5e6f708192a3b4c5d6e7f8",
            fields=["contact", "conversation"],
            bot_status="bot_end",
            metadata={"order_id": "42"},
        )
        assert payload == {
            "to": "+31612345678",
            "bsuid": "US.13491208655302741918",
            "from": "whatsapp",
            "type": "text",
            "content": {"text": "Hi"},
            "channel_uuid": "b3f0c7f6a1e14d2e9b9f0c8a7d6e5f4c",
            "assigned_user": "ops@example.com",
            "team_uuid": "4c1a2b3c4d5e6f708192a3b4c5d6e7f8",
            "fields": "contact,conversation",
            "bot_status": "bot_end",
            "metadata": {"order_id": "42"},
        }

    def test_no_nulls_for_absent_fields(self):
        payload = build_send_payload("+31612345678", content={"text": "Hi"})
        assert set(payload) == {"to", "from", "type", "content"}

    def test_bsuid_alone_is_a_recipient(self):
        payload = build_send_payload(bsuid="US.1349", content={"text": "Hi"})
        assert "to" not in payload
        assert payload["bsuid"] == "US.1349"

    @pytest.mark.parametrize(
        ("to", "sent"),
        [
            pytest.param("+31 6 1234 5678", "+31612345678", id="spaces"),
            pytest.param("+1 (415) 555-0100", "+14155550100", id="parentheses-and-dash"),
            pytest.param("+31.6.1234.5678", "+31612345678", id="dots"),
        ],
    )
    def test_whatsapp_number_separators_are_dropped(self, to, sent):
        assert build_send_payload(to, content={"text": "Hi"})["to"] == sent

    @pytest.mark.parametrize("channel", ["telegram", "instagram", "facebook"])
    def test_other_channels_take_any_identifier(self, channel):
        payload = build_send_payload("user_8f3a@handle", content={"text": "Hi"}, from_=channel)
        assert payload["to"] == "user_8f3a@handle"
        assert payload["from"] == channel

    def test_content_and_metadata_as_json_strings(self):
        payload = build_send_payload(
            "+31612345678",
            type="image",
            content=f'{{"url": "{URL}", "text": "cap"}}',
            metadata='{"run": "42"}',
        )
        assert payload["content"] == {"url": URL, "text": "cap"}
        assert payload["metadata"] == {"run": "42"}

    def test_template_values_as_json_string(self):
        payload = build_send_payload(
            "+31612345678", content={}, template_uuid="t", optin_contact=True, template_values='["a", "b"]'
        )
        assert payload["template_values"] == ["a", "b"]

    def test_fields_as_comma_string(self):
        assert (
            build_send_payload("+31612345678", content={"text": "x"}, fields="contact")["fields"] == "contact"
        )


class TestValidationRules:
    """One row per rule; each error names the field and what is expected."""

    @pytest.mark.parametrize(
        ("kwargs", "field", "expected"),
        [
            pytest.param({"type": "sticker"}, "type", "one of 'text'", id="unknown-type"),
            pytest.param({"from_": "sms"}, "from", "one of 'whatsapp'", id="unknown-channel"),
            pytest.param({"to": None}, "to or bsuid", "required", id="no-recipient"),
            pytest.param({"to": ""}, "to", "phone number", id="empty-to-whatsapp"),
            pytest.param(
                {"to": "", "from_": "telegram"}, "to", "non-empty string", id="empty-to-other-channel"
            ),
            pytest.param({"to": "hello"}, "to", "phone number", id="whatsapp-to-not-a-number"),
            pytest.param({"to": "+1234"}, "to", "6 to 15 digits", id="whatsapp-to-too-short"),
            pytest.param({"to": "+1234567890123456"}, "to", "6 to 15 digits", id="whatsapp-to-too-long"),
            pytest.param({"to": 31612345678}, "to", "a string", id="to-not-a-string"),
            pytest.param({"bsuid": ""}, "bsuid", "non-empty string", id="empty-bsuid"),
            pytest.param({"content": None}, "content", "an object", id="no-content"),
            pytest.param({"content": "not json"}, "content", "a JSON object", id="content-not-json"),
            pytest.param({"content": "[1, 2]"}, "content", "an object", id="content-json-array"),
            pytest.param({"content": ["text"]}, "content", "an object", id="content-list"),
            pytest.param({"content": {}}, "content.text", "non-empty string", id="text-without-text"),
            pytest.param({"content": {"text": ""}}, "content.text", "non-empty string", id="text-empty"),
            pytest.param({"content": {"text": 5}}, "content.text", "non-empty string", id="text-not-str"),
            pytest.param(
                {"content": {"text": "a", "url": URL}},
                "content.url",
                "absent for type 'text'",
                id="text-with-url",
            ),
            pytest.param(
                {"content": {"text": "a", "foo": 1}}, "content", "unknown key 'foo'", id="unknown-content-key"
            ),
            pytest.param(
                {"type": "image", "content": {"text": "x"}}, "content.url", "http(s)", id="image-no-url"
            ),
            pytest.param(
                {"type": "image", "content": {"url": "not a url"}},
                "content.url",
                "an http(s) URL for type 'image'",
                id="image-url-not-url",
            ),
            pytest.param(
                {"type": "document", "content": {"url": "ftp://example.com/a.pdf"}},
                "content.url",
                "http(s)",
                id="document-ftp-url",
            ),
            pytest.param(
                {"type": "video", "content": {"url": "https://"}},
                "content.url",
                "http(s)",
                id="video-url-no-host",
            ),
            pytest.param(
                {"type": "document", "content": {"url": URL, "text": "caption"}},
                "content.text",
                "absent for type 'document'",
                id="document-caption-outside-template",
            ),
            pytest.param(
                {"template_uuid": "t"}, "optin_contact", "True with template_uuid", id="template-no-optin"
            ),
            pytest.param(
                {"template_uuid": "t", "optin_contact": False},
                "optin_contact",
                "True",
                id="template-optin-false",
            ),
            pytest.param({"template_uuid": ""}, "template_uuid", "non-empty", id="template-uuid-empty"),
            pytest.param({"optin_contact": "yes"}, "optin_contact", "True or False", id="optin-not-bool"),
            pytest.param(
                {"template_values": ["a"]}, "template_uuid", "set when", id="values-without-template"
            ),
            pytest.param(
                {"template_uuid": "t", "optin_contact": True, "template_values": ["a", 1]},
                "template_values",
                "list of strings",
                id="values-not-strings",
            ),
            pytest.param(
                {"template_uuid": "t", "optin_contact": True, "template_values": {"a": "b"}},
                "template_values",
                "list of strings",
                id="values-not-list",
            ),
            pytest.param({"assigned_user": "bob"}, "assigned_user", "e-mail", id="assigned-user-not-email"),
            pytest.param({"team_uuid": ""}, "team_uuid", "non-empty", id="team-uuid-empty"),
            pytest.param({"channel_uuid": ""}, "channel_uuid", "non-empty", id="channel-uuid-empty"),
            pytest.param({"fields": "contact,messages"}, "fields", "one of 'contact'", id="fields-unknown"),
            pytest.param({"fields": []}, "fields", "comma-separated", id="fields-empty"),
            pytest.param(
                {"bot_status": "bot_pause"}, "bot_status", "one of 'bot_start'", id="bot-status-unknown"
            ),
            pytest.param({"metadata": "[]"}, "metadata", "an object", id="metadata-not-object"),
            pytest.param(
                {"metadata": {f"k{i}": "v" for i in range(11)}},
                "metadata",
                "at most 10 pairs",
                id="metadata-11",
            ),
            pytest.param(
                {"metadata": {"k" * 51: "v"}}, "metadata key", "1 to 50", id="metadata-key-too-long"
            ),
            pytest.param({"metadata": {"": "v"}}, "metadata key", "1 to 50", id="metadata-key-empty"),
            pytest.param(
                {"metadata": {"k": "v" * 501}}, "metadata['k']", "at most 500", id="metadata-value-too-long"
            ),
            pytest.param({"metadata": {"k": 1}}, "metadata['k']", "a string", id="metadata-value-not-str"),
        ],
    )
    def test_rule(self, kwargs, field, expected):
        args = {"to": "+31612345678", "type": "text", "content": {"text": "Hi"}, **kwargs}
        with pytest.raises(CallbellValidationError) as excinfo:
            build_send_payload(**args)
        message = str(excinfo.value)
        assert message.startswith(field)
        assert expected in message

    def test_error_is_catchable_as_value_error_and_airflow_error(self):
        with pytest.raises(ValueError, match="type"):
            build_send_payload("+31612345678", type="sticker", content={"text": "x"})
        assert issubclass(CallbellValidationError, CallbellError)

    def test_error_shows_the_bad_value(self):
        with pytest.raises(CallbellValidationError, match=r"got 'not a url'"):
            build_send_payload("+31612345678", type="image", content={"url": "not a url"})

    def test_boundaries_are_accepted(self):
        metadata = {f"{i:0>50}": "v" * 500 for i in range(10)}
        assert build_send_payload("+123456", content={"text": "x"}, metadata=metadata)["metadata"] == metadata
        assert build_send_payload("+123456789012345", content={"text": "x"})["to"] == "+123456789012345"


class TestUuid:
    def test_accepts_callbell_uuid(self):
        assert validate_uuid("uuid", "adf3d1216d4c4dcd908199d6700f2381") == "adf3d1216d4c4dcd908199d6700f2381"

    @pytest.mark.parametrize("bad", ["", "../auth/me", "adf3", None, "g" * 32])
    def test_refuses_anything_else(self, bad):
        with pytest.raises(CallbellValidationError, match="uuid must be a Callbell message uuid"):
            validate_uuid("uuid", bad)
