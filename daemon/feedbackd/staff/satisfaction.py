"""The citizen's answer to "are you satisfied?": a score 1-5 from a digit or a word, in Chinese or English.

Only the first non-empty line of the (quote-stripped) reply is read, and only its start (after a courtesy
such as "谢谢，" and a "我"/"I'm"): the result mail asks for "1-5 or 满意 / 一般 / 不满意", and a citizen who
writes anything else is writing a follow-up, not an answer.  Words are matched longest first, because "不满意"
contains "满意" and "一般" starts like "一分"; a digit must stand alone ("5", "5分", "5/5"), so "50元",
"5分钟" and "3 days later" are not scores.
"""

from __future__ import annotations

import unicodedata

# Longest first within each language is ensured by sorting below; values are scores 1-5.
_WORDS: dict[str, int] = {
    "非常满意": 5, "十分满意": 5, "很满意": 5, "满意": 5, "非常滿意": 5, "很滿意": 5, "滿意": 5,
    "比较满意": 4, "比較滿意": 4, "还算满意": 4,
    "基本满意": 3, "基本滿意": 3, "一般": 3, "还行": 3, "还可以": 3, "還行": 3, "還可以": 3,
    "不太满意": 2, "不大满意": 2, "不太滿意": 2,
    "五星好评": 5, "好评": 5, "中评": 3, "差评": 1,
    "不满意": 1, "很不满意": 1, "非常不满意": 1, "十分不满意": 1, "不滿意": 1, "很不滿意": 1, "非常不滿意": 1,
    "very satisfied": 5, "extremely satisfied": 5, "completely satisfied": 5, "satisfied": 5,
    "mostly satisfied": 4, "somewhat satisfied": 4,
    "neutral": 3, "ok": 3, "okay": 3, "so-so": 3, "so so": 3,
    "not very satisfied": 2, "somewhat dissatisfied": 2,
    "not satisfied": 1, "unsatisfied": 1, "dissatisfied": 1, "very unsatisfied": 1, "very dissatisfied": 1,
    "not satisfied at all": 1,
}  # fmt: skip
_BY_LENGTH = sorted(_WORDS, key=len, reverse=True)
_PREFIXES = ("我对结果", "我对处理结果", "对处理结果", "对结果", "本人", "我", "i am ", "i'm ", "i’m ", "im ")
_COURTESY = ("非常感谢", "谢谢你们", "谢谢您", "谢谢", "感谢", "多谢", "您好", "你好",
             "thank you", "thanks", "hello", "hi")
_CHINESE_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_UNITS = ("颗星", "星级", "星好评", "星", "分", "/5", " / 5", " out of 5", " stars", " star", " points", " point")
_NOT_AFTER_WORD = frozenset("度吗么否")  # 满意度 (a noun), 满意吗 (a question)
_HEAD = 64  # characters of the first line an answer can use
_PUNCTUATION = " \t\u3000,.;:!?，。；：！？、~～-—)）]】"


def parse_satisfaction(text: str) -> tuple[int, str] | None:
    """``(score, rest of the text)`` when the reply answers the question, else None."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    first = next((n for n, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return None
    line = lines[first].strip()
    lower, origin = _normalized(line[:_HEAD])
    found = _score(lower)
    if found is None:
        return None
    score, used = found
    rest = line[origin[used] if used < len(origin) else len(line[:_HEAD]) :]
    return score, "\n".join([rest.lstrip(_PUNCTUATION), *lines[first + 1 :]]).strip()


def _normalized(head: str) -> tuple[str, list[int]]:
    """NFKC and lower case (full-width ５ is 5), with each character's position in ``head``."""
    chars: list[str] = []
    origin: list[int] = []
    for pos, char in enumerate(head):
        for out in unicodedata.normalize("NFKC", char).lower():
            chars.append(out)
            origin.append(pos)
    return "".join(chars), origin


def _score(lower: str) -> tuple[int, int] | None:
    """The score and how many characters of ``lower`` (normalized) the answer used."""
    for start in _starts(lower):
        found = _digit(lower, start) or _word(lower, start)
        if found is not None:
            return found
    return None


def _starts(lower: str) -> list[int]:
    """Where the answer may begin: at once, after a courtesy ("谢谢，"), after "我"/"I'm"."""
    starts = [0]
    courtesy = next((c for c in _COURTESY if lower.startswith(c)), "")
    after = len(lower[len(courtesy) :].lstrip(_PUNCTUATION))
    if courtesy and len(lower) - after > len(courtesy):  # only with punctuation after it: "谢谢，满意"
        starts.append(len(lower) - after)
    for start in list(starts):
        prefix = next((p for p in _PREFIXES if lower.startswith(p, start)), "")
        if prefix:
            starts.append(start + len(prefix))
    return starts


def _digit(lower: str, start: int) -> tuple[int, int] | None:
    """``5``, ``5分``, ``5星``, ``5/5``, ``五分``, ``4 stars``; not ``50``, ``5元`` or ``3 days``."""
    char = lower[start : start + 1]
    if char and char in "12345":
        score, needs_unit = int(char), False
    elif char in _CHINESE_DIGITS:
        score, needs_unit = _CHINESE_DIGITS[char], True  # 一般 is a word, 一分 a score
    else:
        return None
    end = start + 1
    unit = next((u for u in _UNITS if lower.startswith(u, end)), "")
    if needs_unit and not unit:
        return None
    end += len(unit)
    after = lower[end : end + 1]
    if after and after not in _PUNCTUATION:
        return None
    following = lower[end:].lstrip(" \t")[:1]
    if not unit and after in (" ", "\t") and following.isascii() and following.isalnum():
        return None  # "3 days ago …" is not a score; "5 很好" and "5 - thanks" are
    return score, end


def _word(lower: str, start: int) -> tuple[int, int] | None:
    for word in _BY_LENGTH:
        if lower.startswith(word, start):
            end = start + len(word)
            after = lower[end : end + 1]
            if word.isascii() and after.isalpha() and after.isascii():
                continue  # "okay" is not "ok" + "ay", "oklahoma" is not an answer
            if after in _NOT_AFTER_WORD:
                return None
            return _WORDS[word], end
    return None
