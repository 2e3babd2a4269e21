"""The pipe protocol's pure parts: parsing every good and bad line, encoding, line splitting."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpod.decision import Decision
from hpod.wire import (MAX_LINE, CheckpointNote, LineBuffer, Report, WireProblem,
                       encode_checkpoint, encode_decision, encode_report, parse_decision,
                       parse_line, parse_lines)


@pytest.mark.parametrize("line, expected", [
    (b'{"step": 3, "val_loss": 0.41, "acc": 0.88}\n', Report(3, {"val_loss": 0.41, "acc": 0.88})),
    (b'{"step": 0}', Report(0, {})),
    (b'{"acc": 1, "step": 7}\r\n', Report(7, {"acc": 1.0})),
    (b'  {"step": 2, "loss": -1e300}  \n', Report(2, {"loss": -1e300})),
    (b'{"checkpoint": "/tmp/ckpt-3"}\n', CheckpointNote("/tmp/ckpt-3")),
    (b'{"checkpoint": "rel/path", "step": 3}', CheckpointNote("rel/path")),
    ('{"step": 1, "λ": 0.5}'.encode(), Report(1, {"λ": 0.5})),
])
def test_good_lines(line: bytes, expected: object) -> None:
    assert parse_line(line) == expected


def test_nan_infinity_and_null() -> None:
    msg = parse_line(b'{"step": 1, "a": NaN, "b": Infinity, "c": -Infinity, "d": null}')
    assert isinstance(msg, Report)
    assert math.isnan(msg.metrics["a"]) and math.isnan(msg.metrics["d"])
    assert msg.metrics["b"] == math.inf and msg.metrics["c"] == -math.inf


@pytest.mark.parametrize("line, reason", [
    (b"", "empty line"),
    (b"   \n", "empty line"),
    (b"not json\n", "not JSON"),
    (b'{"step": 1, "loss": 0.5\n', "not JSON"),
    (b"\xff\xfe{}\n", "not UTF-8"),
    (b"[1, 2]\n", "not an object"),
    (b'"step"\n', "not an object"),
    (b"null\n", "not an object"),
    (b"3\n", "not an object"),
    (b'{"loss": 1.0}\n', 'no "step"'),
    (b'{"step": -1, "loss": 1.0}\n', '"step" must be an integer >= 0'),
    (b'{"step": 1.0, "loss": 1.0}\n', '"step" must be an integer >= 0'),
    (b'{"step": "1", "loss": 1.0}\n', '"step" must be an integer >= 0'),
    (b'{"step": true, "loss": 1.0}\n', '"step" must be an integer >= 0'),
    (b'{"step": null}\n', '"step" must be an integer >= 0'),
    (b'{"step": 99999999999999999999}\n', '"step" must be an integer >= 0'),
    (b'{"step": 1, "loss": "low"}\n', "metric 'loss' is not a number"),
    (b'{"step": 1, "loss": true}\n', "metric 'loss' is not a number"),
    (b'{"step": 1, "loss": [1]}\n', "metric 'loss' is not a number"),
    (b'{"step": 1, "loss": {"a": 1}}\n', "metric 'loss' is not a number"),
    (b'{"step": 1, "": 1.0}\n', "empty name"),
    (b'{"step": 1, "big": 1' + b"0" * 400 + b"}\n", "too large"),
    (b'{"checkpoint": 3}\n', '"checkpoint" must be a non-empty string'),
    (b'{"checkpoint": ""}\n', '"checkpoint" must be a non-empty string'),
    # JSON escapes of lone surrogates: the store cannot encode them (the daemon crashed at
    # every start on one such metric name).
    (b'{"step": 1, "\\ud800x": 2}\n', "not valid Unicode"),
    (b'{"checkpoint": "/tmp/ckpt-\\udcff"}\n', "not valid Unicode"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    (b'{"step": 1, "x": "' + b"a" * MAX_LINE + b'"}\n', "longer than"),
])
def test_bad_lines_are_problems_not_crashes(line: bytes, reason: str) -> None:
    msg = parse_line(line)
    assert isinstance(msg, WireProblem), msg
    assert reason in msg.reason
    assert len(msg.line_preview) <= 121


def test_printf_spellings_of_non_finite_values_are_read_and_a_problem_keeps_its_step() -> None:
    # awk's printf("%f") writes a diverged loss as "-nan" or "inf": a real measurement.
    report = parse_line(b'{"step": 2, "loss": -nan, "acc": INF, "x": -inf}\n')
    assert isinstance(report, Report) and report.step == 2 and math.isnan(report.metrics["loss"])
    assert report.metrics["acc"] == math.inf and report.metrics["x"] == -math.inf
    assert isinstance(parse_line(b'{"step": 2, "name": "nan"}'), WireProblem)  # a string stays one
    problem = parse_line(b'{"step": 3, "loss": 0.5x}')
    assert isinstance(problem, WireProblem) and problem.step == 3  # answered, not left waiting
    assert parse_line(b"garbage").step is None


def test_a_burst_is_parsed_as_its_lines_one_by_one_would_be() -> None:
    # Two broken halves joined into the burst's JSON array read as one valid report.
    halves = [b'{"step": 1, "loss": 9},{"step": 2', b'"loss": 8}']
    assert [type(m) for m in parse_lines(halves)] == [WireProblem, WireProblem]
    both = b'{"checkpoint": "/abs/ckpt", "resumable": true}'
    assert parse_lines([both]) == [parse_line(both)] == parse_lines([WireProblem("x", ""), both])[1:]
    bad_name = b'{"step": 1, "\\udcff": 2.0}'
    assert isinstance(parse_lines([b'{"step": 0, "loss": 1}', bad_name])[1], WireProblem)


def test_preview_is_short_and_printable() -> None:
    msg = parse_line(b"\x00garbage" * 10_000)
    assert isinstance(msg, WireProblem)
    assert msg.line_preview.endswith("…") and len(msg.line_preview) == 121


@given(step=st.integers(0, 2**63 - 1),
       metrics=st.dictionaries(
           st.text(min_size=1).filter(lambda k: k not in ("step", "checkpoint", "resumable")),
           st.floats(allow_nan=False), max_size=5))
def test_encode_report_round_trips(step: int, metrics: dict[str, float]) -> None:
    assert parse_line(encode_report(step, metrics)) == Report(step, metrics)


def test_encode_report_accepts_number_like_values() -> None:
    class Scalar:  # stands for a numpy / TensorFlow scalar, without importing either
        def __float__(self) -> float:
            return 0.25

    class Index:  # stands for a numpy integer: not an int, but has __index__
        def __index__(self) -> int:
            return 4

    metrics = {"a": Scalar(), "b": 3, "c": None, "d": math.nan}
    line = encode_report(Index(), metrics)  # type: ignore[arg-type]
    msg = parse_line(line)
    assert isinstance(msg, Report) and msg.step == 4
    assert msg.metrics["a"] == 0.25 and msg.metrics["b"] == 3.0
    assert math.isnan(msg.metrics["c"]) and math.isnan(msg.metrics["d"])
    assert line.endswith(b"\n") and line.count(b"\n") == 1


@pytest.mark.parametrize("step, metrics, match", [
    (-1, {}, "step must be an integer"),
    (1.5, {}, "step must be an integer"),
    (True, {}, "step must be an integer"),
    (1, {"loss": "0.5"}, "must be a number"),
    (1, {"loss": [1.0]}, "must be a number"),
    (1, {"checkpoint": 1.0}, "invalid metric name"),
    (1, {"": 1.0}, "invalid metric name"),
    (1, {"x" * MAX_LINE: 1.0}, "longer than"),
])
def test_encode_report_refuses(step: object, metrics: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        encode_report(step, metrics)  # type: ignore[arg-type]


def test_encode_checkpoint() -> None:
    assert parse_line(encode_checkpoint("/a b/c")) == CheckpointNote("/a b/c")
    with pytest.raises(ValueError):
        encode_checkpoint("")


@pytest.mark.parametrize("decision", list(Decision))
@pytest.mark.parametrize("step", [None, 0, 12])
def test_decision_round_trip(decision: Decision, step: int | None) -> None:
    line = encode_decision(decision, step)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_decision(line) == (decision, step)


def test_encode_decision_accepts_plain_strings_and_refuses_others() -> None:
    line = encode_decision("stop", 1)  # type: ignore[arg-type]
    assert parse_decision(line) == (Decision.STOP, 1)
    with pytest.raises(ValueError):
        encode_decision("explode", 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("line", [
    b"", b"nope", b"[]", b'{"decision": "explode"}', b'{"step": 1}', b'{"decision": 1}',
    b'{"decision": "stop", "step": "1"}',
])
def test_parse_decision_ignores_what_it_does_not_know(line: bytes) -> None:
    assert parse_decision(line) is None


def test_line_buffer_splits_across_chunks() -> None:
    buf = LineBuffer(max_line=10)
    assert buf.feed(b"ab") == []
    assert buf.feed(b"c\nde\n\nf") == [b"abc", b"de", b""]
    assert buf.feed(b"g") == []
    assert buf.feed(b"\n") == [b"fg"]
    assert buf.finish() == []


def test_line_buffer_skips_an_overlong_line_and_keeps_going() -> None:
    buf = LineBuffer(max_line=10)
    out = buf.feed(b"ok\n" + b"y" * 6)
    assert out == [b"ok"]
    out = buf.feed(b"y" * 6)  # now over the limit, no newline yet
    assert out == []
    out = buf.feed(b"y" * 100 + b"\nnext\n" + b"z" * 11 + b"\nlast")
    assert [type(o) for o in out] == [WireProblem, bytes, WireProblem]
    assert out[1] == b"next"
    assert isinstance(out[0], WireProblem) and out[0].line_preview.startswith("yyyy")
    assert buf.finish() == [b"last"]


def test_line_buffer_reports_an_overlong_unterminated_line_at_eof() -> None:
    buf = LineBuffer(max_line=4)
    assert buf.feed(b"123456") == []
    [problem] = buf.finish()
    assert isinstance(problem, WireProblem) and "longer than 4" in problem.reason


def test_line_buffer_refuses_a_silly_limit() -> None:
    with pytest.raises(ValueError):
        LineBuffer(max_line=0)


def test_a_burst_parses_like_its_lines_one_by_one() -> None:
    from hpod.wire import WireProblem, parse_line, parse_lines

    good = [b'{"step": 1, "loss": 0.5}', b'{"checkpoint": "/tmp/c"}', b'{"step": 2, "loss": NaN}']
    bad = [b"not json", b"[1, 2]", b"", b'{"step": -1}', b"1, 2", b'{"step": 3}]']
    problem = WireProblem("line longer than 1048576 bytes", "xxx")
    for burst in (good, good + bad, bad[:1] + good, [problem, *good], [b"1, 2", *good]):
        expected = [item if isinstance(item, WireProblem) else parse_line(item) for item in burst]
        got = parse_lines(burst)
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            if hasattr(a, "metrics") and hasattr(b, "metrics"):
                assert a.step == b.step and set(a.metrics) == set(b.metrics)
            else:
                assert a == b
