"""Rule evaluation speed: 200 rules over a few thousand varied Chinese and English messages.

    .venv/bin/python bench/bench_rules.py [--rules 200] [--messages 3000] [--seed 7]

The rules are written as YAML and go through the real loader (so regexes are compiled once, as
in the daemon), some with ``within: sentence`` or ``unless``; the messages are real RFC 5322 bytes
through ``parse_message``, 15% of the Chinese ones in traditional characters and 10% of the English
subjects in full-width forms.  Parsing is not timed: only ``RuleSet.evaluate``, which includes the
normalisation (NFKC, OpenCC t2s, case folding) and the matched words of every rule that matched.
The shipped ``rules/`` set is timed on the same messages too.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import opencc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "daemon"))

from feedbackd.mail.message import ParsedMessage  # noqa: E402 - after the sys.path line
from feedbackd.mail.parse import parse_message  # noqa: E402 - after the sys.path line
from feedbackd.routing import RuleSet, load_ruleset  # noqa: E402 - after the sys.path line

ZH_WORDS = (
    '快递 配送 物流 延迟 退款 支付失败 扣款 质量问题 破损 假货 过期 变质 态度 服务差 推诿 隐私 个人信息 泄露 骚扰电话 噪音 扰民 路灯 垃圾 清运 物业 停车 电梯 漏水 停水 停电 '
    '燃气 起火 危险 受伤 儿童 学校 医院 挂号 公交 地铁 线路 站台 绿化 公园 长椅 道路 施工 占道 违建 养犬 油烟 排污 河道 空气 建议 表扬 感谢 意见 投诉 咨询 发票 合同 押金 '
    '维修 安装 售后 客服 热线 网点 窗口 排队 预约 证件 社保 公积金 户口 补贴 菜市场 价格 缺斤少两 外卖 骑手 超时'
).split()
EN_WORDS = (
    'delivery parcel courier refund payment charged twice broken damaged expired rude staff privacy data '
    'leaked noise street light rubbish collection lift water leak outage gas fire danger injured school '
    'hospital bus route park bench roadworks parking suggestion praise thanks complaint invoice contract '
    'deposit repair warranty hotline appointment queue pension subsidy market price takeaway rider late'
).split()
ZH_FILLER = (
    "您好，我是本市居民，想反映一个情况。", "这个问题已经持续了很长时间，给我们的生活带来了很大不便。",
    "之前打过电话，但一直没有得到答复。", "希望有关部门能够重视，尽快处理。", "具体情况如下：",
    "附近的居民都有同样的感受。", "谢谢你们的工作！", "如有需要，可以随时联系我。",
)
EN_FILLER = (
    "Hello, I am writing to report a problem in my neighbourhood. ",
    "This has been going on for several weeks and nobody has answered my calls. ",
    "I hope the relevant department can look into it soon. ", "Many neighbours feel the same way. ",
    "Thank you for your work. ", "Please contact me if you need more details. ",
)
TRADITIONAL = opencc.OpenCC("s2t")
FULL_WIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}
HEADERS = ("X-Priority", "X-Mailer", "List-Id", "Auto-Submitted", "X-Source", "Organization")
DEPARTMENTS = ("general", "safety", "quality", "logistics", "payments", "service", "privacy", "suggestions")
PRIORITIES = ("urgent", "high", "normal", "low")


def base_yaml() -> str:
    depts = "\n".join(
        f"  {d}: {{name: 部门{i}, staff: [{d}@city.example], lead: {d}-lead@city.example}}"
        for i, d in enumerate(DEPARTMENTS)
    )
    return (
        f"departments:\n{depts}\npriorities:\n"
        "  urgent: {first-response: 1h, resolution: 1d}\n  high: {first-response: 4h, resolution: 3d}\n"
        "  normal: {first-response: 1d, resolution: 7d}\n  low: {first-response: 3d, resolution: 14d}\n"
        "defaults: {department: general, priority: normal, kind: problem}\n"
    )


def flow(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def condition(rng: random.Random, depth: int = 0) -> str:
    """One random condition, as a YAML flow mapping."""
    kind = rng.choices(
        ["zh_any", "en_contains", "regex", "header", "sender", "to", "nested", "attachment", "language"],
        weights=[30, 12, 14, 10, 6, 5, 0 if depth > 1 else 16, 4, 3],
    )[0]
    field = rng.choice(["subject", "body", "text"])
    if kind == "zh_any":
        extra = rng.choice(["", "", "", ", within: sentence", f", unless: {flow(rng.sample(ZH_WORDS, 2))}"])
        return f"{{{field}: {{contains-any: {flow(rng.sample(ZH_WORDS, rng.randint(3, 8)))}{extra}}}}}"
    if kind == "en_contains":
        return f"{{{field}: {{contains: '{rng.choice(EN_WORDS)} {rng.choice(EN_WORDS)}'}}}}"
    if kind == "regex":
        words = "|".join(rng.sample(EN_WORDS, 3))
        pattern = rng.choice([
            rf"\b({words})\b", rf"(订单号|order (no|number))\s*[:：]?\s*\d{{{rng.randint(6, 12)},}}",
            rf"({'|'.join(rng.sample(ZH_WORDS, 3))}).{{0,10}}(没有|未|不)",
        ])
        return f"{{{field}: {{regex: '{pattern}'}}}}"
    if kind == "header":
        return f"{{header: {{name: {rng.choice(HEADERS)}, contains-any: [{rng.choice(['1', 'bulk', 'auto', 'x'])}]}}}}"
    if kind == "sender":
        return rng.choice(["{sender: {domain: gov.cn}}", "{sender: {glob: '*@163.example'}}",
                           f"{{sender: {{contains: {rng.choice(['zhang', 'li', 'wang'])}}}}}"])
    if kind == "to":
        return f"{{to: {{glob: '{rng.choice(['complaints', 'suggestions', 'feedback'])}@*'}}}}"
    if kind == "attachment":
        return rng.choice(["{attachment: {type: 'image/*'}}", "{attachment: {has: false}}"])
    if kind == "language":
        return f"{{language: {rng.choice(['zh', 'en'])}}}"
    op = rng.choice(["all", "any"])
    parts = [condition(rng, depth + 1) for _ in range(rng.randint(2, 4))]
    if rng.random() < 0.5:
        parts.append(f"{{not: {condition(rng, depth + 1)}}}")
    return f"{{{op}: {flow(parts)}}}"


def rules_yaml(count: int, rng: random.Random) -> str:
    lines = ["rules:"]
    for i in range(count):
        then = [f"tags: [t{i}]"]
        if rng.random() < 0.4:
            then.append(f"department: {rng.choice(DEPARTMENTS)}")
        if rng.random() < 0.3:
            then.append(f"priority: {rng.choice(PRIORITIES)}")
        if rng.random() < 0.03:
            then.append("stop: true")
        lines.append(f"  - name: rule-{i}\n    when: {condition(rng)}\n    then: {{{', '.join(then)}}}")
    return "\n".join(lines) + "\n"


def message(rng: random.Random) -> bytes:
    chinese = rng.random() < 0.7
    words, filler = (ZH_WORDS, ZH_FILLER) if chinese else (EN_WORDS, EN_FILLER)
    sep = "" if chinese else " "
    subject = sep.join(rng.sample(words, rng.randint(1, 3)))
    paragraphs = []
    for _ in range(rng.randint(2, 8)):  # mostly ordinary prose, a keyword here and there
        sentence = "".join(rng.sample(filler, 2))
        if rng.random() < 0.4:
            sentence += sep.join(rng.sample(words, rng.randint(1, 2))) + ("。" if chinese else ". ")
        paragraphs.append(sentence + rng.choice(filler))
    if chinese and rng.random() < 0.15:  # Taiwan and Hong Kong mail: traditional characters
        subject, paragraphs = TRADITIONAL.convert(subject), [TRADITIONAL.convert(p) for p in paragraphs]
    if not chinese and rng.random() < 0.1:  # typed with a full-width input method
        subject = subject.translate(FULL_WIDTH)
    msg = EmailMessage()
    msg["From"] = f"{rng.choice(['zhang', 'li', 'wang', 'chen'])}{rng.randint(1, 99)}@" \
                  f"{rng.choice(['qq.example', '163.example', 'gmail.example', 'beijing.gov.cn'])}"
    msg["To"] = rng.choice(["feedback@city.example", "complaints@city.example", "suggestions@city.example"])
    msg["Subject"] = subject
    for name in rng.sample(HEADERS, rng.randint(0, 3)):
        msg[name] = rng.choice(["1 (Highest)", "bulk", "auto-replied", "Foxmail 7.2", "<news.city.example>"])
    msg.set_content("\n".join(paragraphs))
    if rng.random() < 0.2:
        msg.add_attachment(b"\xff\xd8\xff\xe0", maintype="image", subtype="jpeg", filename="photo.jpg")
    return msg.as_bytes()


def time_ruleset(ruleset: RuleSet, messages: list[ParsedMessage], rounds: int, stored: bool = False) -> list[float]:
    """Microseconds per evaluate(), the best of ``rounds`` runs for each message.

    With ``stored``, also ``to_dict()`` as the daemon does to store the decision: that is when the
    matched words of the rules that matched are looked for.  CPU time of this thread, so that other
    processes on a busy machine do not count."""
    for msg in messages[:200]:  # warm up
        ruleset.evaluate(msg).to_dict()
    best = [float("inf")] * len(messages)
    clock = time.thread_time_ns
    for _ in range(rounds):
        for i, msg in enumerate(messages):
            start = clock()
            decision = ruleset.evaluate(msg)
            if stored:
                decision.to_dict()
            best[i] = min(best[i], (clock() - start) / 1000)
    return best


def report(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"{label}: median {statistics.median(ordered):.1f} µs, mean {statistics.fmean(ordered):.1f} µs, "
            f"p99 {p99:.1f} µs, max {ordered[-1]:.1f} µs per message")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="runs per message; the best is kept")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "base.yaml").write_text(base_yaml(), encoding="utf-8")
        (directory / "rules.yaml").write_text(rules_yaml(args.rules, rng), encoding="utf-8")
        start = time.perf_counter()
        ruleset = load_ruleset(directory)
        load_ms = (time.perf_counter() - start) * 1000
    messages = [parse_message(message(rng)) for _ in range(args.messages)]
    chars = statistics.fmean(len(m.subject) + len(m.text) for m in messages)
    hits = statistics.fmean(len(ruleset.evaluate(m).hits) for m in messages)
    print(f"{len(ruleset.rules)} rules loaded and compiled in {load_ms:.0f} ms; {len(messages)} messages "
          f"(70% Chinese), {chars:.0f} characters on average, {hits:.1f} rules matching on average")
    print(report(f"{len(ruleset.rules)} generated rules", time_ruleset(ruleset, messages, args.rounds)))
    print(report("  and stored with the matched words", time_ruleset(ruleset, messages, args.rounds, stored=True)))
    shipped = load_ruleset(ROOT / "rules")
    print(report(f"shipped rules/ ({len(shipped.rules)} rules)", time_ruleset(shipped, messages, args.rounds)))
    print(report("  and stored with the matched words", time_ruleset(shipped, messages, args.rounds, stored=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
