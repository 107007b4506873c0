"""The weekly report as mail: figures as text, an HTML table and an inline SVG chart (pygal).

The chart is SVG markup inside the HTML part rather than an attached image: compose() writes
text + HTML only, and an inline ``<svg>`` needs no Content-ID plumbing.  pygal's default script
links (a CDN) are switched off: the mail loads nothing from anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pygal
from markupsafe import Markup
from pygal.style import DefaultStyle

from feedbackd.jobs.report import CHART_WEEKS, rows
from feedbackd.mail.compose import compose
from feedbackd.mail.message import Address
from feedbackd.outgoing import record_and_queue

if TYPE_CHECKING:
    from feedbackd.jobs.base import JobContext

_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL | re.IGNORECASE)
TEMPLATE = "report"
PURPOSE = "report"
KIND_NAMES = {"zh-CN": {"problem": "问题反馈", "opinion": "意见建议"},
              "en": {"problem": "Problems", "opinion": "Opinions"}}
CHART_TITLE = {"zh-CN": "每周来信量（按类型）", "en": "Cases per week by kind"}


def chart_svg(volumes: Mapping[str, Sequence[int]], end: datetime, language: str,
              weeks: int = CHART_WEEKS) -> str:
    """A stacked bar chart of cases per kind in each week before ``end`` (labels: the weeks' first days)."""
    chart = pygal.StackedBar(width=640, height=320, explicit_size=True, js=[], disable_xml_declaration=True,
                             legend_at_bottom=True, style=DefaultStyle, title=CHART_TITLE.get(language, ""),
                             no_data_text="—", print_values=False)
    chart.x_labels = [(end - timedelta(weeks=weeks - i)).strftime("%m-%d") for i in range(weeks)]
    names = KIND_NAMES.get(language, KIND_NAMES["en"])
    for kind, counts in volumes.items():
        chart.add(names.get(kind, kind), list(counts))
    svg: str = chart.render(is_unicode=True)
    return _SCRIPT.sub("", svg)  # pygal's inline config script: mail clients drop or flag scripts


def context(report: Mapping[str, Any], volumes: Mapping[str, Sequence[int]], end: datetime,
            language: str, names: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """What the report templates see; ``names``: display names of departments and priorities by key."""
    previous: Mapping[str, Any] = report.get("previous") or {}
    return {
        "report": report,
        "period": _days(report["period"]),
        "previous_period": _days(previous["period"]) if previous else None,
        "rows": [{"section": s, "key": k, "value": v, "previous": p} for s, k, v, p in rows(report)[3:]],
        "names": {"by_kind": KIND_NAMES.get(language, KIND_NAMES["en"]), **(names or {})},
        "chart": Markup(chart_svg(volumes, end, language)),  # pygal escapes the labels itself
    }


def _days(period: Mapping[str, str]) -> dict[str, str]:
    """ISO instants → the first and the last local day (``to`` is exclusive)."""
    start, end = (datetime.fromisoformat(period[k]) for k in ("from", "to"))
    return {"from": start.date().isoformat(), "to": (end - timedelta(microseconds=1)).date().isoformat()}


def queue_report(ctx: JobContext, report: Mapping[str, Any], volumes: Mapping[str, Sequence[int]],
                 admins: Sequence[str]) -> int:
    """Render once and queue one mail per admin, all in one transaction; returns how many were queued."""
    mailbox = ctx.settings.mailbox
    language = mailbox.language
    end = datetime.fromisoformat(report["period"]["to"])
    ruleset = ctx.rules()
    names = {"by_department": {k: d.name for k, d in ruleset.departments.items()},
             "by_priority": {k: p.name for k, p in ruleset.priorities.items()}}
    rendered = ctx.templates.render(TEMPLATE, language, context(report, volumes, end, language, names))
    with ctx.engine.begin() as conn:
        for admin in admins:
            outgoing = compose(rendered, sender=Address(mailbox.name, mailbox.address), recipient=Address("", admin),
                               in_reply_to=None, references=[], automatic=True, auto_submitted="auto-generated")
            record_and_queue(conn, outgoing, case_id=None, purpose=PURPOSE, subject=rendered.subject,
                             text=rendered.text, from_addr=mailbox.address, from_name=mailbox.name)
    return len(admins)
