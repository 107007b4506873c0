"""The new text of a reply: quoted history and signature dropped, so only what the sender wrote is
relayed (staff answers) or routed (citizen replies).

Mail clients do not mark where their quote starts; they write a header line or block before it.  Measured
on 17 Chinese and Western clients (../shared/NOTES-mail-stack.md "Text from mail"), a short list of
line-anchored markers finds every one of them:

* attribution lines: ``在 2024-01-15 09:00:00，"…" <…> 写道：`` (163, Thunderbird, iPhone), ``… 于2024年1月15日周一
  09:00写道：`` (Gmail zh), ``On … wrote:`` (Gmail, Apple Mail; Gmail may wrap it over two lines);
* separators: ``------------------ 原始邮件 ------------------`` (QQ Mail), ``-----Original Message-----`` /
  ``-----邮件原件-----`` (Outlook), ``---------- Forwarded message ---------``, a row of 20+ ``_`` (Outlook on the
  web, Outlook mobile), ``Begin forwarded message:`` / ``开始转发的邮件：`` (Apple Mail);
* header blocks: a ``发件人:`` / ``From:`` / ``寄件者:`` line followed within 4 lines by ``发送时间`` / ``Sent`` /
  ``Date`` / ``收件人`` / ``To`` / ``主题`` … (Outlook desktop zh/en, Foxmail, QQ Mail).

Everything from the first marker on is dropped.  ``>``-quoted lines are dropped wherever they are (inline
answers keep their text), and an attribution with nothing new above it but quoted lines below it is a
bottom-posted reply: the text after the quote is kept.  A ``-- `` line ends the text (signature), and
trailing mobile signatures (``发自我的iPhone``, ``Sent from my …``, ``来自网易邮箱大师``, ``Get Outlook for iOS``) go.

HTML replies carry their quote as structure (``blockquote``, ``div.gmail_quote``, QQ Mail's ``includetail``,
163's ``#isReplyContent``, Outlook on the web's ``#appendonsend``) and mark signatures (``#Signature``,
``div.gmail_signature``, ``#AppleMailSignature``, Foxmail's rule, Outlook desktop's ``_MailAutoSig`` bookmark):
the HTML is read first when a reply has one, so a staff member's signature does not reach the citizen; the plain
text is the fallback.

Every step looks at each line (or element) a bounded number of times and uses string methods rather than
regular expressions, so hostile input (megabyte lines of ``-`` or ``_``, thousands of ``From:`` lines) stays
linear.  The full text is always stored elsewhere; this is for relaying and for reading commands only.
"""

from __future__ import annotations

from lxml import etree

from feedbackd.mail.html import html_to_text

# -- plain text ----------------------------------------------------------------------------------

_INVISIBLE = str.maketrans({"\xa0": " ", "\u3000": " ", "\u200b": None, "\ufeff": None, "\t": " "})
_ATTRIBUTION_ENDS = ("写道：", "写道:", "寫道：", "寫道:", "wrote:", "wrote :")
_SEPARATOR_WORDS = ("原始邮件", "邮件原件", "原始郵件", "郵件原件", "转发邮件", "转发的邮件", "轉寄郵件", "转发",
                    "original", "forwarded")  # QQ Mail in English: "------------------ Original ------------------"
_FORWARD_LINES = frozenset({"begin forwarded message", "开始转发的邮件", "以下是转发的邮件", "转发的邮件"})
_FROM_LABELS = frozenset({"from", "发件人", "寄件者", "寄件人"})
_HEADER_LABELS = frozenset({"sent", "date", "to", "cc", "subject", "发送时间", "发送日期", "时间", "日期", "收件人",
                            "抄送", "主题", "寄件日期", "收件者", "副本", "主旨"})
_HEADER_WINDOW = 4  # lines after a From line that may hold the next header (Outlook adds a blank one)
_ATTRIBUTION_LOOKBACK = 2  # Gmail wraps a long attribution once, before the address
_SIGNATURE_MAX = 60  # a mobile signature is one short line
_MY_DEVICE = ("发自我的", "来自我的", "发送自我的", "从我的")  # 发自我的iPhone, 来自我的华为手机
_CLIENT = ("发自", "来自")  # 发自网易邮箱大师, 来自QQ邮箱: only with a client's name at the end
_CLIENT_ENDS = ("邮箱", "邮箱大师", "客户端", "iphone", "ipad", "android", "outlook", "mail", "app")


def strip_reply(text: str, html: str | None = None) -> str:
    """The new text of a reply, trimmed; "" when it holds nothing but quotes and signature.

    ``text`` is the plain text (``ParsedMessage.text``), ``html`` the HTML body when there is one.  The HTML
    is read first when there is one: its structure marks quotes and, unlike the plain text clients derive from
    it, signatures (Outlook on the web, Gmail, Apple Mail), and it then goes through the same line rules.  The
    plain text decides when the HTML gives nothing and the plain text is more than the HTML made readable.
    """
    if html:
        stripped = strip_text(html_reply_text(html))
        if stripped or text.strip() in ("", html_to_text(html).strip()):
            return stripped  # (an HTML-only message's text is the HTML made readable: nothing more to find)
    return strip_text(text)


def strip_text(text: str) -> str:
    """The plain-text part of :func:`strip_reply`."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    norm = [line.translate(_INVISIBLE).strip() for line in lines]
    kept = _unquoted(norm, [_label(line) for line in norm])
    kept = _before_signature(kept, norm)
    return "\n".join(lines[i].rstrip() for i in kept).strip("\n").strip()


def _unquoted(norm: list[str], labels: list[str | None]) -> list[int]:
    """Indexes of the lines above the first quote marker, without ``>`` lines."""
    kept: list[int] = []
    filled = 0  # kept lines that are not blank
    i = 0
    while i < len(norm):
        line = norm[i]
        if _is_quoted(line):
            i += 1
            continue
        start = _marker_start(norm, labels, i, kept)
        if start is None:
            kept.append(i)
            filled += bool(line)
            i += 1
            continue
        while kept and kept[-1] >= start:
            filled -= bool(norm[kept.pop()])
        if filled or not _bottom_posted(norm, i):
            return kept
        i += 1  # an attribution over quoted lines with nothing new above: the answer is below
    return kept


def _is_quoted(line: str) -> bool:
    return line.startswith((">", "＞"))


def _marker_start(norm: list[str], labels: list[str | None], i: int, kept: list[int]) -> int | None:
    """The first line of the quote marker at line ``i`` (an attribution may start earlier), or None."""
    line = norm[i]
    if not line:
        return None
    if _is_separator(line) or _is_header_block(labels, i):
        return i
    if line.endswith(_ATTRIBUTION_ENDS):
        return _attribution_start(norm, i, kept)
    return None


def _is_separator(line: str) -> bool:
    if len(line) >= 20 and not line.strip("_"):
        return True
    if line.startswith("--") and line.endswith("--"):
        inner = line.strip("-").strip().lower()
        return bool(inner) and any(word in inner for word in _SEPARATOR_WORDS)
    return line.rstrip(":：").strip().lower() in _FORWARD_LINES


def _label(line: str) -> str | None:
    """``From`` of ``From: …`` (also ``*From:*``, full-width colon), lower-cased; None when there is none."""
    head = line[:24]
    cut = min((p for p in (head.find(":"), head.find("：")) if p > 0), default=-1)
    if cut < 0:
        return None
    return head[:cut].strip(" *").lower()


def _is_header_block(labels: list[str | None], i: int) -> bool:
    if labels[i] not in _FROM_LABELS:
        return False
    return any(label in _HEADER_LABELS for label in labels[i + 1 : i + 1 + _HEADER_WINDOW])


def _attribution_start(norm: list[str], i: int, kept: list[int]) -> int | None:
    """Where an attribution ending at line ``i`` starts; None when the line is not one (no date, no address)."""
    start = i
    if not _opens_attribution(norm[i]):
        for back in range(1, _ATTRIBUTION_LOOKBACK + 1):
            k = i - back
            if k < 0 or not norm[k] or k not in kept[-_ATTRIBUTION_LOOKBACK:]:
                break
            if _opens_attribution(norm[k]):
                start = k
                break
    joined = " ".join(norm[start : i + 1])
    if not any(c.isdigit() for c in joined) and "@" not in joined:
        return None  # "市民写道：" in a sentence is not a client's attribution
    return start


def _opens_attribution(line: str) -> bool:
    if line.startswith(("On ", "At ", "on ")):
        return True
    rest = line[1:].lstrip()
    return line.startswith(("在", "於", "于")) and rest[:1].isdigit()


def _bottom_posted(norm: list[str], i: int) -> bool:
    """The attribution at line ``i`` is followed (after blank lines) by ``>`` lines."""
    for line in norm[i + 1 : i + 1 + _HEADER_WINDOW]:
        if line:
            return _is_quoted(line)
    return False


def _before_signature(kept: list[int], norm: list[str]) -> list[int]:
    """Drop a ``-- `` signature and the mobile signature lines at the end."""
    for pos, i in enumerate(kept):
        if norm[i] == "--":
            kept = kept[:pos]
            break
    end = len(kept)
    while end:
        last = norm[kept[end - 1]]
        if last and not _is_mobile_signature(last) and not (_is_bare_address(last) and _after_blank(kept, end, norm)):
            break
        end -= 1
    return kept[:end]


def _is_bare_address(line: str) -> bool:
    """Foxmail's default signature: the sender's address alone on the last line."""
    local, at, domain = line.partition("@")
    return bool(local and at and "." in domain) and " " not in line and len(line) <= 254


def _after_blank(kept: list[int], end: int, norm: list[str]) -> bool:
    return end < 2 or not norm[kept[end - 2]]


def _is_mobile_signature(line: str) -> bool:
    if len(line) > _SIGNATURE_MAX:
        return False
    lower = line.lower().replace(" ", "")
    if line.lower().startswith(("sent from ", "get outlook for ")) or lower.startswith(_MY_DEVICE):
        return True
    if lower.startswith(_CLIENT) and len(lower) <= 20:
        return lower.endswith(_CLIENT_ENDS)
    # Outlook mobile zh: 从 Android 版 Outlook 发送 / 获取 Outlook for iOS
    return (lower.startswith("从") and lower.endswith("outlook发送")) or lower.startswith("获取outlook")


# -- HTML ----------------------------------------------------------------------------------------

_PARSER = etree.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True, no_network=True, recover=True)
# Containers of the quoted message: replaced by one ">" line, so an attribution above them still reads
# as an attribution over a quote (a bottom-posted answer below them survives).
_QUOTE_IDS = frozenset({"isreplycontent", "isforwardcontent", "original-content", "qm_quote", "reply-quote"})
_QUOTE_CLASSES = frozenset({"gmail_quote", "yahoo_quoted", "protonmail_quote", "moz-forward-container"})
_QUOTE_TAGS = frozenset({"includetail"})  # QQ Mail and Foxmail wrap the whole quoted mail in it
# Where the quoted message begins and runs to the end of the document (Outlook on the web, new Outlook).
_CUT_IDS = frozenset({"appendonsend", "divrplyfwdmsg", "divrplyfwdmsg_"})
# Outlook desktop (Word HTML) marks only the first line of a signature, with a bookmark: <a name="_MailAutoSig">;
# the signature runs from there to the quote below it, so the bookmark is a cut point too.
_CUT_ANCHOR = "_mailautosig"
# Signatures the clients mark: dropped (a staff member's name and address must not reach the citizen).
_SIGNATURE_IDS = frozenset({"signature", "applemailsignature", "ms-outlook-mobile-signature", "spneditorsign",
                            "ntes-pcmail-signature", "ntes-mailmaster-signature", "qqmailsignature"})
_SIGNATURE_CLASSES = frozenset({"gmail_signature", "moz-signature", "elementtoproof-signature"})
_FOXMAIL_RULE = "#b5c4df"  # Foxmail draws its signature under a short <hr> of this colour


def html_reply_text(html: str) -> str:
    """The HTML body as text, with quote containers as one ``>`` line and client signatures removed."""
    if not html.strip():
        return ""
    try:
        root = etree.fromstring(html.encode("utf-8", errors="replace"), _PARSER)
    except (etree.ParserError, ValueError):
        return html_to_text(html)
    if root is None:
        return html_to_text(html)
    quotes, signatures, cut = _classify(root)
    if cut is not None:
        _truncate_at(cut)
    for elem in signatures:
        _remove(elem)
    for elem in quotes:
        _replace_with_quote_mark(elem)
    return html_to_text(etree.tostring(root, encoding="unicode", method="html"))


def _classify(root: etree._Element) -> tuple[list[etree._Element], list[etree._Element], etree._Element | None]:
    """One walk: outermost quote containers and signatures, and the first cut point."""
    quotes: list[etree._Element] = []
    signatures: list[etree._Element] = []
    walker = etree.iterwalk(root, events=("start",))
    for _event, elem in walker:
        if not isinstance(elem.tag, str):
            continue
        kind = _kind(elem)
        if kind == "cut":
            return quotes, signatures, elem
        if kind == "foxmail-rule":
            following = elem.getnext()
            signatures += [elem] if following is None else [elem, following]
            continue
        if kind:
            (quotes if kind == "quote" else signatures).append(elem)
            walker.skip_subtree()
    return quotes, signatures, None


def _kind(elem: etree._Element) -> str:
    tag = str(elem.tag).rpartition(":")[2].lower()
    ident = (elem.get("id") or "").lower().removeprefix("x_")
    classes = {c.removeprefix("x_") for c in (elem.get("class") or "").lower().split()}
    if ident in _CUT_IDS or (tag == "a" and (elem.get("name") or "").lower() == _CUT_ANCHOR):
        return "cut"
    if ident in _SIGNATURE_IDS or classes & _SIGNATURE_CLASSES or elem.get("title") == "neteasefooter":
        return "signature"
    if tag == "hr" and (elem.get("color") or "").lower() == _FOXMAIL_RULE:
        return "foxmail-rule"
    if tag in _QUOTE_TAGS or ident in _QUOTE_IDS or classes & _QUOTE_CLASSES:
        return "quote"
    if tag == "blockquote" and not _is_indent(elem):
        return "quote"
    return ""


def _is_indent(elem: etree._Element) -> bool:
    """Gmail's "indent more" is a bare blockquote with ``border:none``: the writer's own text."""
    style = (elem.get("style") or "").replace(" ", "").lower()
    bare = not (elem.get("type") or elem.get("class") or elem.get("id"))
    return bare and "border:none" in style


def _remove(elem: etree._Element) -> None:
    parent = elem.getparent()
    if parent is None:
        return
    tail = elem.tail
    previous = elem.getprevious()
    parent.remove(elem)
    if tail:  # text after the element is not part of it
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail


def _replace_with_quote_mark(elem: etree._Element) -> None:
    parent = elem.getparent()
    if parent is None:
        return
    mark = etree.Element("div")
    mark.text = ">"
    mark.tail = elem.tail
    parent.replace(elem, mark)


def _truncate_at(elem: etree._Element) -> None:
    """Remove ``elem`` and everything after it in document order."""
    node = elem
    parent = node.getparent()
    while parent is not None:
        for sibling in list(node.itersiblings()):
            parent.remove(sibling)
        node.tail = None
        node, parent = parent, parent.getparent()
    holder = elem.getparent()
    if holder is not None:
        holder.remove(elem)
