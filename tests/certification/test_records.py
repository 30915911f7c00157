"""Reading numbers from run records: every malformed or out-of-range value raises RecordsInvalid naming it."""

import math

import pytest

from certification.records import RecordsInvalid, decode_float, integer_field, number_field

# An integer of 310 digits, beyond the largest float (about 1.8e308). JSON allows it, and json reads 1e999 as infinity.
HUGE = 10**309


@pytest.mark.parametrize("value, expected", [(1, 1.0), (2.5, 2.5), ("NaN", math.nan), ("-Infinity", -math.inf)])
def test_decode_float_reads_numbers(value, expected):
    assert decode_float(value) == pytest.approx(expected, nan_ok=True)


def test_decode_float_keeps_none():
    assert decode_float(None) is None


@pytest.mark.parametrize("value, english, chinese", [
    ("fast", "invalid number 'fast': expected a number, 'NaN', 'Infinity' or '-Infinity'",
     "无效的数值 'fast'：应为数字、'NaN'、'Infinity' 或 '-Infinity'"),
    (True, "invalid number True: expected a number, 'NaN', 'Infinity' or '-Infinity'",
     "无效的数值 True：应为数字、'NaN'、'Infinity' 或 '-Infinity'"),
    (HUGE, f"invalid number {HUGE}: it is outside the range of a float", f"无效的数值 {HUGE}：超出浮点数的范围"),
], ids=["text", "boolean", "out_of_range"])
def test_decode_float_names_invalid_value(value, english, chinese):
    with pytest.raises(RecordsInvalid) as caught:
        decode_float(value)

    assert str(caught.value) == english
    assert caught.value.problem_zh == chinese


@pytest.mark.parametrize("value, english, chinese", [
    ("fast", "request 3 has sent 'fast', not a number", "请求 3 的 sent 是 'fast'，不是数字"),
    (None, "request 3 has sent None, not a number", "请求 3 的 sent 是 None，不是数字"),
    (HUGE, f"request 3 has sent {HUGE}, outside the range of a float", f"请求 3 的 sent 是 {HUGE}，超出浮点数的范围"),
], ids=["text", "missing", "out_of_range"])
def test_number_field_names_invalid_value(value, english, chinese):
    with pytest.raises(RecordsInvalid) as caught:
        number_field({"sent": value}, "sent", "request 3", "请求 3 ")

    assert str(caught.value) == english
    assert caught.value.problem_zh == chinese


@pytest.mark.parametrize("value, shown", [("first", "'first'"), (None, "None"), (math.inf, "inf"), (math.nan, "nan")],
                         ids=["text", "missing", "infinite", "nan"])
def test_integer_field_names_invalid_value(value, shown):
    with pytest.raises(RecordsInvalid) as caught:
        integer_field({"trial": value}, "trial", "a trial", "某个试验")

    assert str(caught.value) == f"a trial has trial {shown}, not an integer"
    assert caught.value.problem_zh == f"某个试验的 trial 是 {shown}，不是整数"
