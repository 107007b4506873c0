"""HTML mail → readable plain text with lxml: a small block-element walker.

Why not a library: html2text is GPL, inscriptis inserts spaces inside Chinese runs, and
``get_text()`` loses line breaks.  Block elements end lines, inline ones do not; a line break
in the source between two CJK characters is dropped rather than turned into a space.
"""

from __future__ import annotations

import re

from lxml import etree

_SKIP = frozenset({"script", "style", "head", "title", "noscript", "template", "svg", "object", "iframe"})
_BLOCK = frozenset(
    {
        "p", "div", "li", "tr", "table", "tbody", "thead", "tfoot", "ul", "ol", "dl", "dt", "dd",
        "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr", "section", "article",
        "header", "footer", "nav", "aside", "main", "address", "form", "fieldset", "center",
        "figure", "figcaption", "caption", "body", "html",
    }
)  # fmt: skip
_CELL = frozenset({"td", "th"})

# Markers used while collecting, resolved in _finish(): a source white-space run that held a
# line break (SOFT), "start a new line unless at one" for block edges (BLOCK), "leave a blank line"
# for real paragraphs (PARA) and an unconditional line break for <br> and <pre> lines (BREAK).
_SOFT = "\x01"
_BLOCK_MARK = "\x02"
_PARA = "\x03"
_BREAK = "\x04"
_WS = re.compile(r"[ \t\r\n\f]+")
_CJK = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0002ffff"
_SOFT_BETWEEN_CJK = re.compile(f"(?<=[{_CJK}]){_SOFT}+(?=[{_CJK}])")
_SPACES = re.compile(r"[ \x01]+")
_MARKS = re.compile("([\x02\x03\x04])")
_BLANK_LINES = re.compile(r"\n{3,}")

_PARSER = etree.HTMLParser(
    encoding="utf-8", remove_comments=True, remove_pis=True, no_network=True, recover=True
)


def html_to_text(html: str) -> str:
    """Readable text of an HTML document or fragment; "" when there is nothing to read."""
    if not html or not html.strip():
        return ""
    try:
        root = etree.fromstring(html.encode("utf-8", errors="replace"), _PARSER)
    except (etree.ParserError, ValueError):
        return ""
    if root is None:
        return ""
    return _finish(_collect(root))


def _collect(root: etree._Element) -> list[str]:
    """Walk the tree once; emit text, line markers, cell separators and list bullets."""
    out: list[str] = []
    pre_depth = 0
    walker = etree.iterwalk(root, events=("start", "end"))
    for event, elem in walker:
        tag = elem.tag.rpartition(":")[2].lower() if isinstance(elem.tag, str) else ""
        if event == "start":
            if tag in _SKIP:
                walker.skip_subtree()
                continue
            out.append(_edge(tag, elem))
            if tag == "pre":
                pre_depth += 1
            if elem.text:
                out.append(_text(elem.text, pre_depth))
            continue
        if tag in _BLOCK:
            out.append(_PARA if tag == "p" and _edge(tag, elem) == _PARA else _BLOCK_MARK)
            if tag == "pre":
                pre_depth -= 1
        elif tag == "a":
            out.append(_link_suffix(elem))
        if elem.tail and elem is not root:
            out.append(_text(elem.tail, pre_depth))
    return out


def _edge(tag: str, elem: etree._Element) -> str:
    """What the start of an element contributes before its text."""
    if tag == "p":
        # Word/Outlook writes one <p class=MsoNormal> per line; other clients mean paragraphs.
        return _BLOCK_MARK if (elem.get("class") or "").startswith("Mso") else _PARA
    if tag == "li":
        return _BLOCK_MARK + "- "
    if tag in _BLOCK:
        return _BLOCK_MARK
    if tag == "br":
        return _BREAK
    if tag in _CELL:
        return " "
    return ""


def _text(text: str, pre_depth: int) -> str:
    """Collapse HTML white space; remember runs that held a line break (CJK may drop them)."""
    if pre_depth:
        return text.replace("\r\n", "\n").replace("\n", _BREAK)
    return _WS.sub(lambda m: _SOFT if "\n" in m.group() or "\r" in m.group() else " ", text)


def _link_suffix(elem: etree._Element) -> str:
    """Show where a link goes when its text does not say so (citizens send links to evidence)."""
    href = (elem.get("href") or "").strip()
    if not href.startswith(("http://", "https://")):
        return ""
    label = "".join(elem.itertext()).strip()
    if not label or href in label or label in href:
        return ""
    return f" ({href})"


def _finish(parts: list[str]) -> str:
    text = _SOFT_BETWEEN_CJK.sub("", "".join(parts))
    text = _SPACES.sub(" ", text)
    lines = _Lines()
    for token in _MARKS.split(text):
        if token == _BREAK:
            lines.close()
        elif token in (_BLOCK_MARK, _PARA):
            if lines.filled:
                lines.close()
            if token == _PARA and lines.done and lines.done_filled:
                lines.close()
        elif token:
            lines.add(token)
    lines.close()
    text = "\n".join(line.replace("\xa0", " ").strip(" \t") for line in lines.done)
    return _BLANK_LINES.sub("\n\n", text).strip("\n")


class _Lines:
    """Finished lines plus the tokens of the current one, with "holds more than spaces" flags.

    Tokens are joined once per line: appending to the last str of a list copies it every time, which
    made ten thousand empty ``<div> </div>`` take minutes.
    """

    def __init__(self) -> None:
        self.done: list[str] = []
        self.done_filled = False  # the last finished line
        self.current: list[str] = []
        self.filled = False  # a non-breaking space counts as content (Outlook blank lines)

    def add(self, token: str) -> None:
        self.current.append(token)
        self.filled = self.filled or bool(token.strip(" "))

    def close(self) -> None:
        self.done.append("".join(self.current))
        self.done_filled = self.filled
        self.current = []
        self.filled = False
