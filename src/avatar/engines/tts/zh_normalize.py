"""Chinese text written for reading, rewritten for speaking: numbers, dates, times and units.

cn2an reads the numbers themselves (integers, decimals, percentages, fractions, "2026年" digit by
digit); the rules here put what cn2an does not know into a form it reads right first: clock
times, ISO dates, thousands separators, ranges, long digit strings (phone numbers), unit symbols
and currency signs. Traditional and Simplified text both pass; the characters added are read
the same in either script, which is all a voice needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import cn2an

_DIGITS = "零一二三四五六七八九"
_UNITS = {  # longest first, so "km/h" wins over "km"
    "km/h": "公里每小时",
    "°C": "摄氏度",
    "℃": "摄氏度",
    "°F": "华氏度",
    "℉": "华氏度",
    "km": "公里",
    "kg": "公斤",
    "cm": "厘米",
    "mm": "毫米",
    "ml": "毫升",
    "mL": "毫升",
    "GB": "G",
    "MB": "兆",
    "m": "米",
    "g": "克",
    "L": "升",
    "°": "度",
}
_CURRENCY = {"$": "美元", "US$": "美元", "€": "欧元", "£": "英镑", "¥": "元", "￥": "元"}
_NUMBER = r"\d+(?:\.\d+)?"

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_ISO_DATE = re.compile(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\b")
_CLOCK = re.compile(r"(?<![\d:])(\d{1,2})[:：](\d{2})(?::(\d{2}))?(?![\d:])")
_RANGE = re.compile(rf"({_NUMBER})\s*[-~～–—]\s*({_NUMBER})")
# Read digit by digit: numbers with a leading zero (area codes, account numbers) and 11-digit
# mobile numbers; other digit runs are amounts.
_LONG_DIGITS = re.compile(r"(?<![\d.,])(?:0\d{1,3}-\d{3,4}-?\d{3,8}|0\d{2,}|1\d{10})(?![\d.,])")
_UNIT = re.compile(
    rf"({_NUMBER})\s*({'|'.join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))})"
    r"(?![A-Za-z])"
)
_MONEY = re.compile(
    rf"({'|'.join(re.escape(c) for c in sorted(_CURRENCY, key=len, reverse=True))})\s*({_NUMBER})"
)


def digits_one_by_one(digits: str) -> str:
    """'010-1234' -> '零一零一二三四' (how phone and account numbers are read)."""
    return "".join(_DIGITS[int(d)] for d in digits if d.isdigit())


def _number(text: str) -> str:
    return str(cn2an.an2cn(text, "low"))


def _clock(match: re.Match[str]) -> str:
    hour, minute, second = int(match[1]), int(match[2]), match[3]
    if hour > 24 or minute > 59:
        return match[0]  # a score or a ratio ("3:15" of a match stays as written)
    spoken = ("两" if hour == 2 else _number(str(hour))) + "点"
    if minute:
        spoken += ("零" if minute < 10 else "") + _number(str(minute)) + "分"
    if second and int(second):
        spoken += ("" if minute else "零分") + _number(str(int(second))) + "秒"
    return spoken


def _iso_date(match: re.Match[str]) -> str:
    return f"{match[1]}年{int(match[2])}月{int(match[3])}日"


def _unit(match: re.Match[str]) -> str:
    return match[1] + _UNITS[match[2]]


def _money(match: re.Match[str]) -> str:
    return match[2] + _CURRENCY[match[1]]


_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str] | str]] = [
    (_ISO_DATE, _iso_date),
    (_CLOCK, _clock),
    (_LONG_DIGITS, lambda m: digits_one_by_one(m[0])),
    (_THOUSANDS, ""),
    (_MONEY, _money),
    (_RANGE, r"\1到\2"),
    (_UNIT, _unit),
]


def normalize_zh(text: str) -> str:
    """``text`` with numbers, dates, times, percentages and units written as they are spoken.

    >>> normalize_zh("50%的人7:30到")
    '百分之五十的人七点三十分到'
    """
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return str(cn2an.transform(text, "an2cn"))
