"""bench/decide_stream.py: the wire helpers the generator relies on, and its ratios."""

from __future__ import annotations

from aarm.v1 import decision_pb2

from bench import decide_stream
from bench.corpus import CORPUS


def test_wrap_is_a_decide_stream_request_around_the_body() -> None:
    body = CORPUS[0].request_bytes()
    for mid in (1, 127, 128, 300, 2**40):
        msg = decision_pb2.DecideStreamRequest.FromString(decide_stream.wrap(mid, body))
        assert msg.message_id == mid
        # The same message (a map's wire order is not fixed, so compare parsed).
        assert msg.request == decision_pb2.DecideRequest.FromString(body)
        assert msg.timeout_ms == 0


def test_the_message_id_of_an_answer() -> None:
    for mid in (1, 127, 128, 2**33):
        answer = decision_pb2.DecideStreamResponse(message_id=mid)
        answer.response.decision = decision_pb2.DECISION_ALLOW
        assert decide_stream.message_id(answer.SerializeToString()) == mid
    assert decide_stream.message_id(b"") == 0


def test_ratios_are_stream_over_unary() -> None:
    points = {
        "8": {
            "decide": {"service_cpu_us_per_decision": 200.0, "p50_ms": 2.0, "throughput_rps": 100},
            "decide-stream": {
                "service_cpu_us_per_decision": 150.0,
                "p50_ms": 1.0,
                "throughput_rps": 150,
            },
        }
    }
    assert decide_stream.ratios(points) == {
        "ratio_service_cpu_decide_stream_vs_decide_c8": 0.75,
        "ratio_p50_decide_stream_vs_decide_c8": 0.5,
        "ratio_throughput_decide_stream_vs_decide_c8": 1.5,
    }
