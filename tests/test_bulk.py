"""The bulk send's parts: the validating spool, compact results, failure records, the send loop."""

from __future__ import annotations

import json
import pickle
import threading
import time
from typing import Any

import pytest

from airflow_provider_callbell import bulk
from airflow_provider_callbell.exceptions import CallbellAPIError, CallbellError, CallbellValidationError
from airflow_provider_callbell.validation import build_send_payload


def build(message: dict[str, Any]) -> Any:
    return build_send_payload(**message)


def text(to: str, body: str = "hi") -> dict[str, Any]:
    return {"to": to, "content": {"text": body}}


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)

    warning = info


class Progress:
    """Records what the send loop tells a progress store."""

    def __init__(self, earlier: dict[int, dict[str, Any]] | None = None) -> None:
        self.earlier = earlier or {}
        self.begun: tuple[int, str] | None = None
        self.recorded: dict[int, dict[str, Any]] = {}
        self.flushes = 0
        self.block = 3
        self.claims: list[int] = []
        self.released: list[int] = []

    def begin(self, total: int, recipients_digest: str) -> dict[int, dict[str, Any]]:
        self.begun = (total, recipients_digest)
        return self.earlier

    def claim(self, start: int, per_second: float | None) -> int:
        self.claims.append(start)
        assert self.begun is not None
        return min(start + self.block, self.begun[0])

    def release(self, index: int) -> None:
        self.released.append(index)

    def record(self, index: int, result: dict[str, Any]) -> None:
        self.recorded[index] = result

    def flush(self) -> None:
        self.flushes += 1


class TestSpool:
    def test_keeps_the_built_bodies_one_per_line(self):
        with bulk.spool_messages(
            iter([text("+31 6 1234 5678", "a\nb"), text("+31687654321")]), build
        ) as spool:
            lines = [json.loads(line) for line in spool]
            assert spool.count == 2
        assert lines == [
            {"to": "+31612345678", "from": "whatsapp", "type": "text", "content": {"text": "a\nb"}},
            {"to": "+31687654321", "from": "whatsapp", "type": "text", "content": {"text": "hi"}},
        ]

    def test_moves_to_a_temporary_file_past_its_memory_size(self, monkeypatch):
        monkeypatch.setattr(bulk, "SPOOL_MEMORY_BYTES", 1000)
        with bulk.spool_messages((text(f"+316{i:08d}") for i in range(50)), build) as spool:
            assert spool._file._rolled
            assert [json.loads(line)["to"] for line in spool] == [f"+316{i:08d}" for i in range(50)]

    def test_frees_itself_after_its_last_line(self):
        # So that a bulk send never holds the spool and every result at once.
        with bulk.spool_messages(iter([text("+31612345678"), text("+31687654321")]), build) as spool:
            lines = iter(spool)
            next(lines)
            assert not spool._file.closed
            assert len(list(lines)) == 1
            assert spool._file.closed
            assert (spool.count, len(spool.digest)) == (2, 64)  # what the send still reads

    def test_invalid_messages_are_all_counted_and_the_first_listed(self):
        messages = [text("+31612345678")] * 5 + [text("not a phone")] * 12 + [{"to": "+31612345678"}]
        with pytest.raises(CallbellValidationError) as excinfo:
            bulk.spool_messages(messages, build)
        message = str(excinfo.value)
        assert message.startswith("13 of 18 messages are invalid, so none was sent: messages[5]: to must be")
        assert "messages[14]: to must be" in message
        assert "messages[15]" not in message
        assert message.endswith("; and 3 more")

    @pytest.mark.parametrize(
        "messages",
        [
            pytest.param("+31612345678", id="string"),
            pytest.param(text("+31612345678"), id="one-message-not-a-list"),
            pytest.param(42, id="number"),
        ],
    )
    def test_input_must_be_an_iterable_of_messages(self, messages):
        with pytest.raises(CallbellValidationError, match="messages must be an iterable of message objects"):
            bulk.spool_messages(messages, build)

    def test_digest_follows_recipients_not_content(self):
        def digest(messages: list[dict[str, Any]]) -> str:
            with bulk.spool_messages(messages, build) as spool:
                return spool.digest

        first = digest([text("+31612345678", "a"), text("+31687654321", "b")])
        assert digest([text("+31612345678", "changed"), text("+31687654321", "b")]) == first
        assert digest([text("+31687654321", "b"), text("+31612345678", "a")]) != first
        assert digest([{**text("+31612345678", "a"), "from_": "telegram"}, text("+31687654321")]) != first


class TestResults:
    def test_compact_result_is_a_plain_dict(self):
        message = {"uuid": "adf3d1216d4c4dcd", "status": "enqueued", "contact": {"uuid": "c1"}}
        result = bulk.compact(json.loads(json.dumps(message)))
        assert type(result) is dict
        assert result == message
        assert list(result) == ["uuid", "status", "contact"]
        assert json.loads(json.dumps(result)) == message
        assert pickle.loads(pickle.dumps(result)) == message
        result["index"] = 7  # a caller may add to its results
        assert result == {**message, "index": 7}
        other_order = bulk.compact({"status": "enqueued", "uuid": "x"})
        assert list(other_order.items()) == [("status", "enqueued"), ("uuid", "x")]

    def test_compact_shares_repeated_strings(self):
        one = bulk.compact(json.loads('{"uuid": "adf3d1216d4c4dcd908199d6700f2381", "status": "enqueued"}'))
        two = bulk.compact(json.loads('{"uuid": "bdf3d1216d4c4dcd908199d6700f2381", "status": "enqueued"}'))
        assert one == {"uuid": "adf3d1216d4c4dcd908199d6700f2381", "status": "enqueued"}
        assert one["status"] is two["status"]
        assert next(iter(one)) is next(iter(two))  # the "uuid" key

    @pytest.mark.parametrize(
        ("payload", "recipient"),
        [
            pytest.param({"to": "+31612345678"}, {"to": "+31612345678"}, id="to"),
            pytest.param({"bsuid": "US.123"}, {"bsuid": "US.123"}, id="bsuid"),
        ],
    )
    def test_failure_record(self, payload, recipient):
        error = CallbellAPIError(
            "Callbell refused the request", status_code=422, endpoint="POST /messages/send"
        )
        assert bulk.failure_record(error, {**payload, "content": {"text": "secret"}}) == {
            "error": "CallbellAPIError: POST /messages/send: Callbell refused the request (HTTP 422)",
            "status_code": 422,
            **recipient,
        }

    @pytest.mark.parametrize(
        ("status", "unknown"),
        [
            pytest.param(500, True, id="500-may-have-sent"),
            pytest.param(None, True, id="no-answer"),
            pytest.param(200, True, id="unusable-success"),
            pytest.param(503, False, id="503-nothing-done"),
            pytest.param(429, False, id="rate-limited"),
            pytest.param(422, False, id="refused"),
        ],
    )
    def test_failure_record_says_when_the_message_may_have_gone_out(self, status, unknown):
        error = CallbellAPIError("failed", status_code=status, endpoint="POST /messages/send")
        record = bulk.failure_record(error, {"to": "+31612345678"})
        assert bulk.is_delivery_unknown(record) is unknown
        assert ("delivery_unknown" in record) is unknown

    def test_failure_record_of_a_request_that_never_reached_callbell(self):
        error = CallbellAPIError("no answer", endpoint="POST /messages/send", maybe_acted_on=False)
        assert not bulk.is_delivery_unknown(bulk.failure_record(error, {"to": "+31612345678"}))

    def test_describe_failures_counts_by_reason_with_an_example(self):
        results = [
            {"uuid": "a"},
            {"error": "CallbellAPIError: refused (HTTP 422)", "status_code": 422, "to": "+31600000001"},
            {"error": "CallbellServerError: down (HTTP 503)", "status_code": 503, "to": "+31600000002"},
            {"error": "CallbellAPIError: refused (HTTP 422)", "status_code": 422, "to": "+31600000003"},
        ]
        assert bulk.describe_failures(results) == (
            "2 x CallbellAPIError (HTTP 422), e.g. messages[1] to '+31600000001': CallbellAPIError: refused "
            "(HTTP 422); 1 x CallbellServerError (HTTP 503), e.g. messages[2] to '+31600000002': "
            "CallbellServerError: down (HTTP 503)"
        )

    @pytest.mark.parametrize(
        ("max_rps", "workers"),
        [
            pytest.param(285, 32, id="default-rate"),
            pytest.param(71, 18, id="pool-of-4"),
            pytest.param(1, 1, id="slow"),
        ],
    )
    def test_default_workers(self, max_rps, workers):
        assert bulk.default_workers(max_rps) == workers


class TestSendSpooled:
    def spool(self, count: int) -> bulk.Spool:
        return bulk.spool_messages((text(f"+316{i:08d}", str(i)) for i in range(count)), build)

    def test_skips_what_progress_says_was_sent_and_records_the_rest(self):
        progress = Progress(earlier={1: {"uuid": "u1", "status": "sent_in_earlier_try"}})
        sent: list[str] = []

        def send_one(line: bytes) -> dict[str, Any]:
            to = json.loads(line)["to"]
            sent.append(to)
            return {"uuid": f"uuid-{to}"}

        with self.spool(3) as spool:
            results = bulk.send_spooled(spool, send_one, workers=2, progress=progress, log=Log())
            digest = spool.digest
        assert sorted(sent) == ["+31600000000", "+31600000002"]
        assert results == [
            {"uuid": "uuid-+31600000000"},
            {"uuid": "u1", "status": "sent_in_earlier_try"},
            {"uuid": "uuid-+31600000002"},
        ]
        assert progress.begun == (3, digest)
        assert progress.recorded == {0: results[0], 2: results[2]}
        assert progress.flushes == 1

    @pytest.mark.parametrize(
        ("resend_unknown", "resent"),
        [
            pytest.param(False, [], id="at-most-once-skips-it"),
            pytest.param(True, ["+31600000001"], id="at-least-once-resends-it"),
        ],
    )
    def test_a_message_an_earlier_attempt_left_unknown(self, resend_unknown, resent):
        unknown = {"error": "no clear answer", "status_code": None, "delivery_unknown": True}
        progress = Progress(earlier={0: {"uuid": "u0", "status": "sent_in_earlier_try"}, 1: unknown})
        sent: list[str] = []

        def send_one(line: bytes) -> dict[str, Any]:
            sent.append(json.loads(line)["to"])
            return {"uuid": "new"}

        log = Log()
        with self.spool(2) as spool:
            results = bulk.send_spooled(
                spool, send_one, workers=1, progress=progress, log=log, resend_unknown=resend_unknown
            )
        assert sent == resent
        assert results[1] == ({"uuid": "new"} if resend_unknown else unknown)
        assert any("1 of 2 messages were sent by an earlier attempt" in line for line in log.lines)
        assert any("may have gone out" in line for line in log.lines) is not resend_unknown

    def test_an_interrupted_send_still_records_every_message_that_went_out(self):
        """A worker's unexpected error stops new sends; those in flight finish and are recorded."""
        progress = Progress()
        sent: set[int] = set()
        lock = threading.Lock()

        def send_one(line: bytes) -> dict[str, Any]:
            index = int(json.loads(line)["content"]["text"])
            if index == 20:
                raise RuntimeError("bug")
            with lock:
                sent.add(index)
            return {"uuid": f"u{index}"}

        log = Log()
        with self.spool(200) as spool, pytest.raises(RuntimeError, match="bug"):
            bulk.send_spooled(spool, send_one, workers=4, progress=progress, log=log)
        assert set(progress.recorded) == sent
        assert max(sent) < 200 - 1  # it stopped before the end
        assert progress.flushes == 1
        assert any("bulk send interrupted" in line for line in log.lines)

    def test_a_stopped_send_starts_nothing_more_and_records_what_went_out(self):
        stop = threading.Event()
        sent: set[int] = set()
        lock = threading.Lock()

        class StopAfterFive(Progress):
            def record(self, index: int, result: dict[str, Any]) -> None:
                super().record(index, result)
                if len(self.recorded) == 5:
                    stop.set()  # as on_kill does on SIGTERM

        def send_one(line: bytes) -> dict[str, Any]:
            index = int(json.loads(line)["content"]["text"])
            with lock:
                sent.add(index)
            return {"uuid": f"u{index}"}

        progress = StopAfterFive()
        with self.spool(100) as spool, pytest.raises(CallbellError, match="the bulk send was stopped after"):
            bulk.send_spooled(spool, send_one, workers=2, progress=progress, log=Log(), stop=stop)
        assert set(progress.recorded) == sent
        assert len(sent) < 100
        assert progress.flushes == 1


class TestWriteAhead:
    def spool(self, count: int) -> bulk.Spool:
        return bulk.spool_messages((text(f"+316{i:08d}", str(i)) for i in range(count)), build)

    def test_no_message_starts_before_its_claim_returned(self):
        progress = Progress(earlier={4: {"uuid": "u4", "status": "sent_in_earlier_try"}})
        claimed_until = [0]
        lock = threading.Lock()
        started_unclaimed: list[int] = []

        class Claims(Progress):
            def claim(self, start: int, per_second: float | None) -> int:
                time.sleep(0.01)  # a slow write: the workers must not run ahead of it
                stop = super().claim(start, per_second)
                claimed_until[0] = stop
                return stop

        progress = Claims(earlier=progress.earlier)

        def send_one(line: bytes) -> dict[str, Any]:
            index = int(json.loads(line)["content"]["text"])
            with lock:
                if index >= claimed_until[0]:
                    started_unclaimed.append(index)
            return {"uuid": f"u{index}"}

        with self.spool(20) as spool:
            bulk.send_spooled(spool, send_one, workers=4, progress=progress, log=Log(), per_second=7)
        assert started_unclaimed == []
        assert progress.claims == [0, 3, 6, 9, 12, 15, 18]  # blocks of 3; 4 was sent earlier
        assert progress.released == []

    def test_claimed_messages_that_never_started_are_released(self):
        stop = threading.Event()

        class StopAtOnce(Progress):
            def claim(self, start: int, per_second: float | None) -> int:
                stop.set()  # as on_kill does, right after the first claim
                return super().claim(start, per_second)

        progress = StopAtOnce()
        with self.spool(10) as spool, pytest.raises(CallbellError, match="stopped"):
            bulk.send_spooled(
                spool, lambda line: {"uuid": "u"}, workers=1, progress=progress, log=Log(), stop=stop
            )
        assert progress.claims == [0]
        assert sorted(progress.released) == [0, 1, 2]  # 0 was dropped unstarted, 1-2 never handed out
        assert progress.recorded == {}
