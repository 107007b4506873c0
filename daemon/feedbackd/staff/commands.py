"""The command lines at the top of a staff reply (``#status in-progress``, ``#状态 处理中`` …).

Staff answer from any mail client, so commands are plain lines: only at the top of the reply, before any
other text, each starting with ``#`` (or a full-width ``＃``, as Chinese input methods type it).  English and
Chinese words are the same command.  The parser only reads syntax; whether a priority, department or
assignee exists, and which status changes are allowed, is for ``staff.actions`` to decide.

A reply with any error relays nothing (the caller answers the staff member with :func:`help_text`), so a
typo never sends half an instruction's text to a citizen.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field

# canonical name → (words that mean it, whether it takes an argument)
_COMMANDS: dict[str, tuple[tuple[str, ...], bool]] = {
    "status": (("status", "状态", "狀態"), True),
    "priority": (("priority", "优先级", "優先級"), True),
    "assign": (("assign", "指派"), True),
    "move": (("move", "转办", "轉辦"), True),
    "note": (("note", "备注", "備註"), False),
    "resolve": (("resolve", "办结", "辦結"), False),
    "close": (("close", "关闭", "關閉"), False),
    "reopen": (("reopen", "重新打开", "重新打開"), False),
}
_WORDS = {word: name for name, (words, _arg) in _COMMANDS.items() for word in words}
_STATUSES: dict[str, tuple[str, ...]] = {
    "in-progress": ("in-progress", "in_progress", "inprogress", "in progress", "progress", "处理中", "办理中",
                    "處理中", "辦理中"),
    "waiting": ("waiting", "wait", "等待补充", "等待", "待补充", "等待補充"),
    "open": ("open", "reopen", "打开", "重新打开", "待处理"),
    "resolved": ("resolved", "resolve", "办结", "已办结", "已解决", "辦結"),
    "closed": ("closed", "close", "关闭", "已关闭", "關閉"),
}
_STATUS_WORDS = {word: status for status, words in _STATUSES.items() for word in words}
_STATUS_CHANGES = frozenset({"status", "resolve", "close", "reopen"})  # at most one per reply
_SPACES = " \t\u3000\xa0"
_SEPARATORS = _SPACES + ":："
_TRAILING = "。.!！,，;；" + _SPACES  # "#办结。" is still #办结
_MAX_ERRORS = 20
_ECHO = 120  # characters of a bad line shown back


@dataclass(frozen=True)
class Command:
    """One command line: ``name`` canonical (status, priority, assign, move, note, resolve, close, reopen)."""

    name: str
    argument: str  # canonical for status (in-progress, waiting, open, resolved, closed), lower-case address
    line: str  # the line as written, for events and error messages


@dataclass(frozen=True)
class ParsedReply:
    commands: list[Command]
    body: str  # the text after the command lines, trimmed
    errors: list[str] = field(default_factory=list)  # one per bad line, naming it; nothing is relayed when any


def parse_commands(text: str) -> ParsedReply:
    """Read the command lines at the top of ``text`` (already stripped of quotes); the rest is the body."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    commands: list[Command] = []
    errors: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip(_SPACES)
        if line and not line.startswith(("#", "＃")):
            break
        i += 1
        if not line:
            continue
        command, error = _parse_line(line)
        if command is not None:
            commands.append(command)
        if error:
            errors.append(error)
    errors += _conflicts(commands)
    if len(errors) > _MAX_ERRORS:
        errors = [*errors[:_MAX_ERRORS], f"… {len(errors) - _MAX_ERRORS} more"]
    return ParsedReply(commands, "\n".join(lines[i:]).strip(), errors)


def _parse_line(line: str) -> tuple[Command | None, str]:
    rest = line[1:].lstrip(_SPACES)
    cut = next((n for n, c in enumerate(rest) if c in _SEPARATORS), len(rest))
    word, argument = rest[:cut].rstrip(_TRAILING), rest[cut:].strip(_SEPARATORS).rstrip(_TRAILING)
    name = _WORDS.get(unicodedata.normalize("NFKC", word).lower())
    if name is None:
        return None, _error(line, f"unknown command “{word[:_ECHO]}”", f"未知命令“{word[:_ECHO]}”")
    takes_argument = _COMMANDS[name][1]
    if takes_argument and not argument:
        return None, _error(line, "needs an argument", "缺少参数")
    if not takes_argument and argument:
        return None, _error(line, "takes no argument", "此命令不带参数")
    return _argument(name, argument, line)


def _argument(name: str, argument: str, line: str) -> tuple[Command | None, str]:
    if name == "status":
        status = _STATUS_WORDS.get(" ".join(unicodedata.normalize("NFKC", argument).lower().split()))
        if status is None:
            return None, _error(line, "unknown status (in-progress, waiting)", "未知状态（处理中、等待补充）")
        return Command(name, status, line), ""
    if name == "assign":
        address = unicodedata.normalize("NFKC", argument)
        if "<" in address and address.endswith(">"):  # 张三 <zhang.san@city.example>
            address = address[address.rindex("<") :]
        address = address.strip("<>").removeprefix("mailto:").lower()
        local, at, domain = address.partition("@")
        if not (local and at and "." in domain) or any(c in address for c in _SEPARATORS + "<>,;"):
            return None, _error(line, "needs one mail address", "需要一个邮箱地址")
        return Command(name, address, line), ""
    return Command(name, argument, line), ""


def _conflicts(commands: list[Command]) -> list[str]:
    """Commands that cannot both hold: the same one twice, two status changes, a note that is also a result."""
    errors: list[str] = []
    counts = Counter(c.name for c in commands)
    errors += [_error(f"#{name}", "given more than once", "重复的命令") for name, n in counts.items() if n > 1]
    changes = [name for name in counts if name in _STATUS_CHANGES]
    if len(changes) > 1:
        listed = ", ".join(f"#{name}" for name in changes)
        errors.append(_error(listed, "more than one status change", "多个状态命令相互冲突"))
    if counts["note"] and counts["resolve"]:
        errors.append(_error("#note, #resolve", "a note stays internal, a result goes to the citizen",
                             "备注不发给市民，办结结果发给市民，二者不能同时使用"))
    return errors


def _error(line: str, english: str, chinese: str) -> str:
    shown = line if len(line) <= _ECHO else line[:_ECHO] + "…"
    return f"{shown}: {chinese} / {english}"


_HELP = {
    "zh-CN": """\
在回复的最上方写命令，每行一个，以 # 开头，写在正文之前；命令下面的文字会转给市民。
  #状态 处理中 / #状态 等待补充     更改状态（等待补充时暂停期限）
  #优先级 紧急                      更改优先级（代码或名称）
  #指派 zhang.san@city.example     指派给工作人员
  #转办 城管局                      转给其他部门（代码或名称），该部门会收到通知
  #备注                             内部备注：这封回复不发给市民
  #办结                             正文为最终办理结果，发给市民并请其评价
  #关闭 / #重新打开                 关闭 / 重新打开
不写命令的回复作为进展发给市民（状态改为处理中）。英文命令同样有效：#status in-progress、#priority urgent、
#assign、#move、#note、#resolve、#close、#reopen。
示例：
  #状态 处理中
  您好，已安排维修人员本周五前到现场处理。""",
    "en": """\
Write commands at the very top of your reply, one per line, starting with #, before any other text;
the text below them goes to the citizen.
  #status in-progress / #status waiting   change the status (waiting pauses the deadlines)
  #priority urgent                        change the priority (key or name)
  #assign zhang.san@city.example          assign to a staff member
  #move roads                             move to another department (key or name); its staff are told
  #note                                   internal note: nothing goes to the citizen
  #resolve                                the text is the final result, sent with a satisfaction question
  #close / #reopen                        close / reopen
A reply without commands goes to the citizen as progress (status in-progress). The Chinese words work too:
#状态 处理中、#优先级、#指派、#转办、#备注、#办结、#关闭、#重新打开.
Example:
  #status in-progress
  Hello, a crew will repair the lamp by Friday.""",
}


def help_text(language: str) -> str:
    """The command table with examples, in Chinese ("zh…") or English (anything else)."""
    return _HELP["zh-CN" if language.lower().startswith("zh") else "en"]
