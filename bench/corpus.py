"""A seeded, mixed corpus of feedback mail for the ingest benchmark and the tests.

The mix follows /work/shared/bench-figures.md:

* 59% new complaints, Chinese and English; UTF-8, GBK and GB2312 (some "gb2312" bodies carry
  GBK-only characters, as Foxmail sends them); plain, multipart/alternative and HTML-only;
  about 10% of them carry a 50-200 KB attachment.
* 32% replies to earlier complaints of the same corpus, from the same sender, with In-Reply-To and
  References to the complaint (and to earlier replies of the same thread), subjects ``Re:``/``回复：``.
* 9% automatic mail: out-of-office replies with ``Auto-Submitted: auto-replied``, legacy ones without
  it but with ``X-Autoreply: yes`` or ``Return-Path: <>``, and DSNs (multipart/report from
  MAILER-DAEMON), most with ``Auto-Submitted``, a few without.

Every complaint comes from its own address (``citizen{i}@mail{j}.example``), so "each new complaint
acknowledged once" is "each complaint sender got exactly one mail".  Automatic mail comes from addresses
that never file a complaint (office staff, MAILER-DAEMON) and bounces name recipients outside the corpus.

Messages are built as raw bytes (CRLF) one at a time: ``generate(n, seed)`` is lazy and its memory does
not grow with n (the schedule streams too; replies answer one of the last 2,000 complaints).  Each
message's content comes from its own ``random.Random`` seeded with (seed, index), so a reply can
re-derive the complaint it answers without keeping it, and ``expected(n, seed)`` is cheap (no bodies built).
"""

from __future__ import annotations

import base64
import binascii
import html
import random
import urllib.parse
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

MAILBOX_ADDRESS = "feedback@city.example"
MAILBOX_NAME_ZH = "市民反馈中心"
MAILBOX_NAME_EN = "City Feedback Centre"

NEW = "new"
REPLY = "reply"
AUTO = "auto"

SHARE_NEW = 0.59
SHARE_AUTO = 0.09

# Sub-kinds of automatic mail and their weights (legacy = without Auto-Submitted).
AUTO_KINDS: dict[str, float] = {
    "oof": 0.50,  # Auto-Submitted: auto-replied
    "oof-x-autoreply": 0.05,  # legacy: X-Autoreply: yes only
    "oof-return-path": 0.04,  # legacy: Return-Path: <> only
    "dsn": 0.35,  # multipart/report, Auto-Submitted: auto-replied
    "dsn-legacy": 0.06,  # multipart/report from MAILER-DAEMON, Return-Path: <>, no Auto-Submitted
}

BASE_DATE = datetime(2026, 11, 2, 8, 0, 0, tzinfo=timezone(timedelta(hours=8)))

# --------------------------------------------------------------------------------------------- texts

DISTRICTS = ["朝阳区", "海淀区", "西湖区", "天河区", "武侯区", "江汉区", "鼓楼区", "浦东新区", "南山区",
             "雁塔区", "市南区", "岳麓区", "思明区", "和平区", "金水区", "新城区"]
ROADS = ["建设路", "人民路", "解放大道", "中山路", "文化路", "和平街", "长江路", "黄河路", "学府路",
         "滨江大道", "光明街", "新华路", "幸福大街", "工业园路", "丽泽路", "东风路"]
COMMUNITIES = ["阳光花园", "幸福里小区", "锦绣家园", "翠湖苑", "金色港湾", "和谐家园", "书香门第",
               "御景湾", "碧水蓝天", "枫林小区", "春晓苑", "东方明珠小区"]
PRODUCTS = ["电热水壶", "羽绒服", "空气净化器", "儿童推车", "电动牙刷", "蓝牙耳机", "床垫", "电饭煲",
            "运动鞋", "扫地机器人", "保温杯", "台灯"]
SHOPS = ["优品生活旗舰店", "家家乐超市", "万家福电器", "城东便民店", "鑫源数码", "乐购商城"]
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
         "超", "秀英", "霞", "平", "刚", "桂英", "建华", "志强", "海燕", "晓东", "文博", "子涵"]
# Not in GB2312 but in GBK: Foxmail still labels such text gb2312.
GBK_ONLY_GIVEN = ["镕", "喆", "堃", "珺", "昇", "玥"]

EN_FIRST = ["James", "Mary", "Robert", "Linda", "Michael", "Susan", "David", "Karen", "Daniel", "Emma",
            "Oliver", "Sophie", "Thomas", "Grace", "Peter", "Hannah"]
EN_LAST = ["Smith", "Brown", "Taylor", "Wilson", "Evans", "Walker", "Wright", "Green", "Hall", "Wood",
           "Clarke", "Hughes", "Turner", "Baker"]
EN_STREETS = ["Mill Lane", "Station Road", "Church Street", "Park Avenue", "High Street", "Victoria Road",
              "Queens Drive", "Riverside Walk", "Elm Grove", "Kingsway"]

# (subject variants, body paragraphs); slots are filled from _slots().
ZH_TEMPLATES: list[tuple[list[str], list[str]]] = [
    (["{road}路灯不亮", "反映{district}{road}路灯问题", "{community}门口路灯坏了{days}天"],
     ["{district}{road}靠近{community}一段的路灯已经连续{days}天不亮了，晚上一片漆黑。",
      "老人和孩子晚上出门很不安全，前天还有人在这里摔倒。请尽快安排人员维修。"]),
    (["{community}垃圾无人清运", "垃圾清运不及时", "{district}{community}垃圾堆积"],
     ["{community}{num}号楼旁边的垃圾桶已经{days}天没有人清运了，垃圾堆满溢出来，气味很大。",
      "天气虽然转凉，但还是招来很多苍蝇老鼠，请环卫部门尽快处理。"]),
    (["夜间施工噪音扰民", "{road}工地噪音", "投诉噪音扰民"],
     ["{road}的工地每天晚上{hour}点以后还在施工，机器轰鸣，严重影响附近居民休息。",
      "我们小区很多上班族和学生都睡不好觉，请相关部门依法查处夜间违规施工。"]),
    (["广场舞音响太吵", "{community}广场舞噪音扰民"],
     ["{community}中心广场每天晚上的广场舞音响声音特别大，一直持续到{hour}点多。",
      "多次沟通无效，家里老人有心脏病，希望能协调降低音量、控制时间。"]),
    (["购买的{product}质量问题", "{product}用了{days}天就坏了", "商品质量投诉：{product}"],
     ["我于{month}月{day}日在{shop}购买了一台{product}，订单号{order}，使用不到{days}天就出现故障。",
      "联系商家客服要求退换，对方一直推脱，说是人为损坏。请帮助维护消费者的合法权益。"]),
    (["快递配送延迟", "订单{order}迟迟未送达", "配送延迟投诉"],
     ["我在{shop}下的订单{order}，页面显示{days}天前就已经到达{district}配送站，但一直没有送货。",
      "打电话给快递员也没人接，物流信息一直不更新。请督促尽快配送。"]),
    (["支付失败但已扣款", "缴费支付失败", "订单{order}重复扣款"],
     ["{month}月{day}日我在网上缴纳水费时提示支付失败，但银行卡已经扣款{amount}元。",
      "客服说{days}个工作日内退回，现在已经过了很久还没有到账，请核实处理。"]),
    (["窗口工作人员服务态度差", "投诉服务态度", "{district}政务大厅服务态度问题"],
     ["今天上午我到{district}政务服务大厅办理业务，{num}号窗口的工作人员态度非常恶劣。",
      "我只是询问材料要求，她就不耐烦地让我自己去看，还大声呵斥。希望加强管理和培训。"]),
    (["{road}路面积水严重", "下雨后道路积水"],
     ["每次下雨{road}与{road2}交叉口都会积水，水深能没过脚踝，行人和电动车都没法通过。",
      "应该是排水管道堵塞了，请市政部门疏通。"]),
    (["井盖缺失存在安全隐患", "{road}井盖丢失"],
     ["{road}{num}号门口人行道上有一个井盖不见了，只用一个破纸箱盖着。",
      "晚上很容易有人掉下去，非常危险，请尽快补上。"]),
    (["小区门口违章停车", "{community}消防通道被占"],
     ["{community}东门外长期有车辆违停，把消防通道堵死了，救护车都进不来。",
      "物业说管不了，请交警部门加强巡查。"]),
    (["{num}路公交车经常晚点", "公交晚点投诉"],
     ["{num}路公交车早高峰经常晚点二十多分钟，有时候一连过去三辆都不停站。",
      "很多人上班迟到，请公交公司合理调度，增加班次。"]),
    (["暖气不热", "{community}供暖温度不达标"],
     ["{community}{num}号楼{unit}单元今年供暖以来室内温度只有十四五度，家里有老人和小孩，冻得不行。",
      "已经给供热公司打了{days}次电话，说会派人来看，到现在也没有人来。"]),
    (["{community}突然停水", "停水没有提前通知"],
     ["{month}月{day}日一早{community}突然停水，事先没有任何通知，到晚上还没恢复。",
      "很多居民没有储水，生活非常不便，请说明原因和恢复时间。"]),
    (["申请退款一直未处理", "退款{days}天未到账"],
     ["我在{shop}购买的{product}已经按要求寄回，对方签收也有{days}天了，退款还是没有到账。",
      "每次问客服都说在审核，请帮忙催促。订单号：{order}。"]),
    (["物业乱收费", "{community}物业费上涨不合理"],
     ["{community}物业今年突然把物业费从每平方米{price}元涨到了更高，没有召开业主大会，也没有公示。",
      "小区卫生和安保却越来越差，请主管部门调查。"]),
    (["餐馆油烟扰民", "{road}饭店油烟问题"],
     ["{road}{num}号的饭店排烟管道直接对着居民楼，油烟很大，窗户都不敢开。",
      "请环保部门检查他们有没有安装油烟净化设备。"]),
    (["流浪狗伤人", "{community}流浪犬太多"],
     ["最近{community}附近出现了好几条流浪狗，昨天有个孩子被追着咬伤了。",
      "请相关部门尽快处置，保障居民安全。"]),
    (["共享单车乱停乱放", "{road}人行道被单车堵塞"],
     ["{road}地铁站出口的人行道上堆满了共享单车，行人只能走机动车道。",
      "请督促运营企业及时清理。"]),
    (["电梯经常故障", "{community}{num}号楼电梯坏了"],
     ["{community}{num}号楼的电梯这个月已经坏了{days}次，上周还困过人。",
      "楼里有很多老人，请监督物业和维保单位彻底检修。"]),
    (["网购买到假货", "{shop}出售假冒商品"],
     ["我在{shop}买的{product}，收到后发现是假货，做工粗糙，和官网的完全不一样。",
      "商家拒绝退款，请市场监管部门介入调查。订单号{order}。"]),
    (["快递丢失", "包裹显示签收但没收到"],
     ["我的快递单号{order}显示已签收，但我本人和家人都没有收到，也没有放在驿站。",
      "快递公司互相推诿，请帮助查找包裹或赔偿。"]),
    (["会员卡被自动扣费", "未经同意自动续费"],
     ["{shop}的会员在没有任何提醒的情况下自动续费，扣了我{amount}元。",
      "我从来没有开通过自动续费，要求退还费用。"]),
    (["客服电话一直打不通", "热线电话无人接听"],
     ["这{days}天我一直在拨打服务热线，不是占线就是无人接听，问题一直得不到解决。",
      "希望增加人工客服，或者提供其他联系方式。"]),
    (["医保报销进度咨询", "医保报销迟迟未到账"],
     ["我在{month}月份提交了医保报销材料，到现在已经{days}周了还没有消息。",
      "网上查询一直显示审核中，请问大概还需要多久？"]),
    (["学校门口占道经营", "{road}小学周边摊贩"],
     ["{road}小学门口每天放学时间都有很多流动摊贩占道经营，卖的食品也没有卫生保障。",
      "孩子们放学很拥挤，存在安全隐患。"]),
    (["绿化带被破坏", "{road}绿化带被占用种菜"],
     ["{road}中间的绿化带被人铲掉种上了蔬菜，还堆放了很多杂物。",
      "影响市容，请城管部门处理。"]),
    (["{road}路面坑洼不平", "道路破损严重"],
     ["{road}从{road2}路口到{community}这一段路面坑坑洼洼，好几处大坑。",
      "电动车经过很容易摔倒，请尽快修补。"]),
    (["红绿灯故障", "{road}路口信号灯不亮"],
     ["{road}和{road2}交叉口的红绿灯坏了{days}天，早晚高峰非常混乱，差点发生事故。",
      "请交管部门尽快修复。"]),
    (["{product}维修收费不合理", "售后维修乱收费"],
     ["我的{product}还在保修期内，{shop}的售后却要收{amount}元维修费，还不给开发票。",
      "请问这种做法合规吗？希望给予处理。"]),
]

EN_TEMPLATES: list[tuple[list[str], list[str]]] = [
    (["Street light out on {street}", "Broken street lamps near {street}"],
     ["The street lights on {street} outside number {num} have been out for {days} days.",
      "It is completely dark after six in the evening and my neighbour tripped on the kerb last week."]),
    (["Bins not collected", "Missed rubbish collection on {street}"],
     ["Our bins on {street} have not been collected for {days} days. The pavement is covered in bags.",
      "Foxes have torn several open. Please send someone as soon as possible."]),
    (["Noise from building site at night", "Night-time construction noise"],
     ["The building site next to {street} keeps working after {hour} pm with heavy machinery.",
      "Nobody in our building can sleep. Please check whether they have a permit for night work."]),
    (["Faulty {product_en} - refund refused", "Complaint about product quality"],
     [("I bought a {product_en} from {shop_en} on {date_en}, order {order}, and it stopped working "
       "after {days} days."),
      "The shop refuses a refund and says the damage is my fault. I would like your help."]),
    (["Delivery delayed for {days} days", "Order {order} still not delivered"],
     ["My order {order} has been \"out for delivery\" for {days} days and nobody answers the phone.",
      "Tracking has not been updated since. Please chase the courier."]),
    (["Payment failed but card charged", "Double charge for order {order}"],
     ["On {date_en} the payment page said the payment failed, yet my card was charged {amount} CNY.",
      "Customer service promised a refund within {days} working days. Nothing has arrived."]),
    (["Rude staff at the service counter", "Complaint about staff attitude"],
     ["This morning the officer at counter {num} was extremely rude when I asked about the documents.",
      "I was shouted at in front of other people. I expect better from a public service."]),
    (["Flooding at {street} junction", "Blocked drain on {street}"],
     ["Every time it rains the junction of {street} and {street2} floods ankle-deep.",
      "The drain seems blocked. Pedestrians have to walk in the road."]),
    (["Missing manhole cover", "Dangerous open drain on {street}"],
     ["There is a missing manhole cover on the pavement outside {num} {street}.",
      "Somebody covered it with a cardboard box. Someone will get hurt at night."]),
    (["Bus route {num} always late", "Unreliable bus service"],
     ["Bus {num} is regularly 20 minutes late in the morning rush hour and often does not stop.",
      "Please add more buses or fix the timetable."]),
    (["No heating in flat", "Heating not working since {date_en}"],
     ["The heating in our block at {street} has been barely warm since {date_en}.",
      "We have called the heating company {days} times and nobody came."]),
    (["Refund not received", "Refund for order {order}"],
     ["I returned the {product_en} to {shop_en} and they signed for it {days} days ago.",
      "The refund has still not been paid. Please help."]),
    (["Parking blocking fire lane", "Illegal parking outside {street}"],
     ["Cars park every night across the fire lane at {street}; an ambulance could not get through.",
      "Please ask traffic wardens to patrol the area."]),
    (["Helpline never answers", "Cannot reach customer service"],
     ["For {days} days I have called the hotline and it is either busy or rings out.",
      "Please provide another way to reach a person."]),
    (["Lift out of order again", "Broken lift at {street}"],
     ["The lift in our building at {street} has broken down {days} times this month.",
      "Elderly residents are stuck at home. Please make the management company repair it properly."]),
]
EN_PRODUCTS = ["kettle", "air purifier", "vacuum cleaner", "pushchair", "rice cooker", "mattress",
               "pair of headphones", "winter coat"]
EN_SHOPS = ["HomePlus", "CityMart", "BrightTech", "QuickBuy Online", "Greenway Store"]

ZH_GREETINGS = ["您好：", "尊敬的市民反馈中心工作人员：", "你好，", "领导好！", "您好，", ""]
ZH_CLOSINGS = ["希望尽快处理，谢谢！", "麻烦尽快处理，谢谢。", "此问题已经反映过多次，一直没有解决，盼回复。",
               "期待您的答复。", "谢谢！", "望相关部门重视。"]
ZH_SIGNATURES = ["", "", "发自我的iPhone", "--\n来自网易邮箱大师", "发自我的华为手机", "—— 来自QQ邮箱"]
EN_GREETINGS = ["Dear Sir or Madam,", "Hello,", "Hi,", "To whom it may concern,"]
EN_CLOSINGS = ["Thank you.", "I look forward to your reply.", "Please deal with this urgently.",
               "Many thanks,", "Regards,"]
EN_SIGNATURES = ["", "", "Sent from my iPhone", "Sent from Outlook for Android"]

ZH_FOLLOWUPS = ["补充一下，问题到今天还是没有解决。", "请问处理进度怎么样了？", "我又去看了一下，情况更严重了。",
                "附上我的联系电话：{phone}，方便联系。", "谢谢你们的回复，不过问题依然存在。",
                "已经过去{days}天了，还是没有人来处理。", "今天有人来看过了，但是没有修好。",
                "好的，收到，谢谢！", "请尽快给个答复，谢谢。"]
EN_FOLLOWUPS = ["Just to add: the problem is still there today.", "Any update on this, please?",
                "My phone number is {phone} if you need to call me.",
                "Thanks for the reply, but nothing has changed.", "It has now been {days} days.",
                "Someone came to look but it is still not fixed.", "Thanks, received."]

OOF_ZH = ["您好，我目前休假中，{month}月{day}日返回，期间邮件无法及时回复。如有急事请联系同事{name}。",
          "本人出差中，暂时无法处理邮件，回来后会尽快回复您。",
          "您好！您的邮件已收到，我现在不在办公室，将在返回后处理。"]
OOF_EN = ["Thank you for your email. I am out of the office until {date_en} with limited access to email.",
          "I am currently on annual leave and will respond on my return.",
          "This is an automatic reply: I am away from my desk and will read your message later."]

X_MAILERS = ["Foxmail 7.2.25.228[cn]", "Microsoft Outlook 16.0", "iPhone Mail (21A329)",
             "NetEase Mail Master 5.0", "QQMail 2.x", None, None]


# -------------------------------------------------------------------------------------- schedule

@dataclass(frozen=True, slots=True)
class Item:
    """One message of the schedule: what it is, with indexes (not texts) of what it refers to."""

    index: int
    kind: str  # NEW, REPLY or AUTO
    subkind: str  # NEW: "complaint"; REPLY: "reply"; AUTO: one of AUTO_KINDS
    complaint: int = -1  # REPLY: index of the complaint it answers
    parents: tuple[int, ...] = ()  # REPLY: earlier messages of the thread, oldest first


@dataclass
class Expected:
    """What a correct ingest of ``generate(n, seed)`` should do."""

    n: int
    new: int
    replies: int
    automatic: int
    auto_kinds: Counter[str] = field(default_factory=Counter)
    complaint_senders: list[str] = field(default_factory=list)  # one distinct address per complaint
    automatic_senders: list[str] = field(default_factory=list)


def counts(n: int) -> tuple[int, int, int]:
    """(new complaints, replies, automatic) for a corpus of n messages."""
    new = round(n * SHARE_NEW)
    auto = round(n * SHARE_AUTO)
    if n > 0 and new == 0:
        new = 1
    auto = min(auto, n - new)
    return new, n - new - auto, auto


REPLY_WINDOW = 2000  # replies answer one of the last this-many complaints (keeps the schedule flat)


def schedule(n: int, seed: int = 1) -> Iterator[Item]:
    """The kinds and thread links of the corpus, in order; replies only ever point backwards.

    Streams in O(REPLY_WINDOW) memory: each kind is drawn with probability (left of that kind) / (left
    in all), which gives a uniformly random order with exact counts; the first message is a complaint
    so that every reply has something to answer.
    """
    rng = random.Random(f"feedbackd-bench/{seed}/schedule")
    new, replies, auto = counts(n)
    left = {NEW: new, REPLY: replies, AUTO: auto}
    auto_names = list(AUTO_KINDS)
    auto_weights = list(AUTO_KINDS.values())
    recent: deque[int] = deque()  # the last REPLY_WINDOW complaints
    threads: dict[int, list[int]] = {}  # complaint in the window -> its replies so far
    for i in range(n):
        if i == 0:
            kind = NEW
        else:
            pick = rng.randrange(n - i)
            kind = NEW if pick < left[NEW] else REPLY if pick < left[NEW] + left[REPLY] else AUTO
        left[kind] -= 1
        if kind == NEW:
            recent.append(i)
            if len(recent) > REPLY_WINDOW:
                threads.pop(recent.popleft(), None)
            yield Item(i, NEW, "complaint")
        elif kind == REPLY:
            # Recent complaints are answered more often than old ones.
            if rng.random() < 0.6:
                target = recent[-1 - min(int(rng.expovariate(1 / 20)), len(recent) - 1)]
            else:
                target = recent[rng.randrange(len(recent))]
            thread = threads.setdefault(target, [])
            parents = (target, *thread[-4:])
            thread.append(i)
            del thread[:-4]
            yield Item(i, REPLY, "reply", complaint=target, parents=parents)
        else:
            yield Item(i, AUTO, rng.choices(auto_names, auto_weights)[0])


def expected(n: int, seed: int = 1) -> Expected:
    """The expected counts and senders of ``generate(n, seed)``, without building any message."""
    new, replies, auto = counts(n)
    exp = Expected(n=n, new=new, replies=replies, automatic=auto)
    for item in schedule(n, seed):
        if item.kind == NEW:
            exp.complaint_senders.append(_complainant(seed, item.index).address)
        elif item.kind == AUTO:
            exp.auto_kinds[item.subkind] += 1
            exp.automatic_senders.append(_auto_sender(seed, item))
    return exp


# ------------------------------------------------------------------------------------ generation

@dataclass(frozen=True, slots=True)
class Meta:
    """What the generator knows about one message it yielded."""

    index: int
    kind: str
    subkind: str
    message_id: str  # without angle brackets
    sender: str
    in_reply_to: str | None = None  # without angle brackets
    references: tuple[str, ...] = ()
    charset: str = "us-ascii"
    lang: str = "en"  # "zh" or "en"
    structure: str = "plain"  # plain, alternative, html, report
    attachment: bool = False
    size: int = 0


def generate(n: int, seed: int = 1) -> Iterator[bytes]:
    """N raw messages (CRLF bytes), lazily; the same bytes for the same (n, seed)."""
    for _meta, raw in generate_with_meta(n, seed):
        yield raw


def generate_with_meta(n: int, seed: int = 1) -> Iterator[tuple[Meta, bytes]]:
    for item in schedule(n, seed):
        if item.kind == NEW:
            yield _complaint(seed, item)
        elif item.kind == REPLY:
            yield _reply(seed, item)
        else:
            yield _automatic(seed, item)


def _rng(seed: int, index: int, tag: str) -> random.Random:
    return random.Random(f"feedbackd-bench/{seed}/{index}/{tag}")


def message_id(seed: int, index: int) -> str:
    """The Message-ID (no brackets) of message ``index``; unique within and across seeds."""
    rng = _rng(seed, index, "mid")
    host = rng.choice(["mail", "smtp", "mx", "web"]) + str(rng.randrange(1, 40)) + ".example"
    return f"{BASE_DATE.year}{index:06d}.{seed}.{rng.getrandbits(48):012x}@{host}"


def _date(seed: int, index: int) -> datetime:
    return BASE_DATE + timedelta(seconds=index * 53 + _rng(seed, index, "date").randrange(40))


@dataclass(frozen=True, slots=True)
class Complainant:
    """Everything a complaint and its replies share: who, which language and charset, what about."""

    index: int
    address: str
    name: str
    lang: str  # "zh" or "en"
    charset: str  # declared charset
    codec: str  # the codec actually used (gb2312 is written as GBK, as Foxmail does)
    quoted_name: bool  # Foxmail style '"=?gb2312?B?...?=" <addr>'
    template: int
    slots: dict[str, str]
    subject: str


def _complainant(seed: int, index: int) -> Complainant:
    rng = _rng(seed, index, "who")
    lang = "zh" if rng.random() < 0.7 else "en"
    if lang == "zh":
        charset = rng.choices(["utf-8", "gbk", "gb2312"], [0.5, 0.3, 0.2])[0]
        given = rng.choice(GBK_ONLY_GIVEN) if charset != "utf-8" and rng.random() < 0.08 else ""
        name = rng.choice(SURNAMES) + (given + rng.choice(GIVEN) if given else rng.choice(GIVEN))
        template = rng.randrange(len(ZH_TEMPLATES))
        subjects = ZH_TEMPLATES[template][0]
    else:
        charset = rng.choices(["us-ascii", "utf-8"], [0.6, 0.4])[0]
        name = f"{rng.choice(EN_FIRST)} {rng.choice(EN_LAST)}"
        template = rng.randrange(len(EN_TEMPLATES))
        subjects = EN_TEMPLATES[template][0]
    slots = _slots(rng)
    subject = rng.choice(subjects).format(**slots)
    if lang == "zh" and rng.random() < 0.15:
        subject = rng.choice(["【投诉】", "【紧急】", "关于", "反映："]) + subject
    codec = {"gb2312": "gbk", "us-ascii": "ascii"}.get(charset, charset)
    address = f"citizen{index}@mail{rng.randrange(1, 60)}.example"
    return Complainant(index, address, name, lang, charset, codec,
                       quoted_name=charset == "gb2312" and rng.random() < 0.5,
                       template=template, slots=slots, subject=subject)


def _slots(rng: random.Random) -> dict[str, str]:
    road, road2 = rng.sample(ROADS, 2)
    street, street2 = rng.sample(EN_STREETS, 2)
    return {
        "district": rng.choice(DISTRICTS), "road": road, "road2": road2,
        "community": rng.choice(COMMUNITIES), "num": str(rng.randrange(1, 120)),
        "unit": str(rng.randrange(1, 7)), "days": str(rng.randrange(2, 25)),
        "hour": str(rng.randrange(10, 12)), "month": str(rng.randrange(8, 12)),
        "day": str(rng.randrange(1, 29)), "order": str(rng.randrange(10**11, 10**12)),
        "shop": rng.choice(SHOPS), "product": rng.choice(PRODUCTS), "amount": str(rng.randrange(20, 3000)),
        "price": f"{rng.randrange(1, 4)}.{rng.randrange(0, 10)}", "street": street, "street2": street2,
        "product_en": rng.choice(EN_PRODUCTS), "shop_en": rng.choice(EN_SHOPS),
        "date_en": f"{rng.randrange(1, 29)} {rng.choice(['September', 'October', 'November'])}",
        "phone": f"1{rng.choice('3578')}{rng.randrange(10**8, 10**9)}",
    }


def _complaint_text(c: Complainant, rng: random.Random) -> list[str]:
    """Paragraphs of the complaint (re-derivable from the complainant alone for quoting)."""
    if c.lang == "zh":
        paragraphs = [p.format(**c.slots) for p in ZH_TEMPLATES[c.template][1]]
        greeting, closing, signature = ZH_GREETINGS, ZH_CLOSINGS, ZH_SIGNATURES
        sign = rng.choice([f"市民 {c.name}", c.name, f"{c.name}\n联系电话：{c.slots['phone']}",
                           f"{c.slots['community']}业主 {c.name}"])
    else:
        paragraphs = [p.format(**c.slots) for p in EN_TEMPLATES[c.template][1]]
        greeting, closing, signature = EN_GREETINGS, EN_CLOSINGS, EN_SIGNATURES
        sign = rng.choice([c.name, f"{c.name}\nTel. {c.slots['phone']}"])
    if rng.random() < 0.3:  # some write at length
        paragraphs = paragraphs + [paragraphs[0]] * rng.randrange(1, 3)
    lines = [g for g in [rng.choice(greeting)] if g]
    lines += paragraphs + [rng.choice(closing), "", sign]
    tail = rng.choice(signature)
    if tail:
        lines += ["", tail]
    return lines


# --------------------------------------------------------------------------------- MIME building

def _encoded_words(text: str, charset: str, codec: str) -> str:
    """RFC 2047 B-encoded words of at most ~70 characters, folded with CRLF+space (written as LF)."""
    try:
        text.encode("ascii")
        return text
    except UnicodeEncodeError:
        pass
    words, chunk = [], ""
    for ch in text:
        if len((chunk + ch).encode(codec)) > 42:
            words.append(chunk)
            chunk = ""
        chunk += ch
    if chunk:
        words.append(chunk)
    label = charset.upper() if charset == "utf-8" else charset
    return "\n ".join(f"=?{label}?B?{base64.b64encode(w.encode(codec)).decode()}?=" for w in words)


def _address(name: str, addr: str, charset: str = "utf-8", codec: str = "utf-8",
             quoted: bool = False) -> str:
    if not name:
        return addr
    encoded = _encoded_words(name, charset, codec)
    if encoded == name:
        return f'"{name}" <{addr}>' if any(ch in name for ch in ",.;:") else f"{name} <{addr}>"
    return f'"{encoded}" <{addr}>' if quoted else f"{encoded} <{addr}>"


def _body_part(text: str, subtype: str, charset: str, codec: str, cte: str) -> bytes:
    data = text.encode(codec)
    if cte == "base64":
        payload = base64.encodebytes(data)
    elif cte == "quoted-printable":
        payload = binascii.b2a_qp(data, istext=True)
        if not payload.endswith(b"\n"):
            payload += b"\n"
    else:
        payload = data if data.endswith(b"\n") else data + b"\n"
    head = (f"Content-Type: text/{subtype}; charset=\"{charset}\"\n"
            f"Content-Transfer-Encoding: {cte}\n\n")
    return head.encode("ascii") + payload


def _html(lines: list[str], charset: str, style: int) -> str:
    esc = [html.escape(line) for line in lines]
    if style == 0:  # Foxmail / QQ
        inner = "".join(f"<div><span>{line}</span></div>" if line else "<div><br></div>" for line in esc)
        font = "Arial" if charset == "us-ascii" else "微软雅黑"
        body = f"<body><div style=\"font-family: {font}; font-size: 14px;\">{inner}</div></body>"
    elif style == 1:  # Outlook Word-HTML
        inner = "".join(f"<p class=MsoNormal><span lang=ZH-CN>{line or '&nbsp;'}</span></p>\n"
                        for line in esc)
        body = f"<body lang=ZH-CN link=\"#0563C1\"><div class=WordSection1>\n{inner}</div></body>"
    else:  # webmail
        inner = "<br>\n".join(esc)
        body = f"<body><div style=\"line-height:1.7;color:#000000;font-size:14px\">{inner}</div></body>"
    return (f"<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset={charset}\">"
            f"</head>\n{body}\n</html>\n")


def _boundary(rng: random.Random, tag: str) -> str:
    return f"----=_{tag}_{rng.getrandbits(64):016X}"


def _multipart(subtype: str, parts: list[bytes], boundary: str, extra: str = "") -> tuple[str, bytes]:
    """(Content-Type header value, body) of a multipart entity."""
    b = boundary.encode()
    body = b"".join(b"--" + b + b"\n" + part + (b"" if part.endswith(b"\n") else b"\n") for part in parts)
    body += b"--" + b + b"--\n"
    preamble = b"This is a multi-part message in MIME format.\n\n"
    return f"multipart/{subtype}{extra};\n\tboundary=\"{boundary}\"", preamble + body


def _entity(content_type: str, body: bytes) -> bytes:
    return f"Content-Type: {content_type}\n\n".encode() + body


def _attachment(rng: random.Random) -> bytes:
    size = rng.randrange(50_000, 200_001)
    kind = rng.choice(["jpg", "jpg", "png", "pdf"])
    if kind == "jpg":
        data, ctype = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + rng.randbytes(size - 11), "image/jpeg"
    elif kind == "png":
        data, ctype = b"\x89PNG\r\n\x1a\n" + rng.randbytes(size - 8), "image/png"
    else:
        data, ctype = b"%PDF-1.4\n" + rng.randbytes(size - 9), "application/pdf"
    stem = rng.choice(["现场照片", "订单截图", "发票", "IMG_" + str(rng.randrange(1000, 9999)), "照片", "scan"])
    filename = f"{stem}.{kind}"
    if filename.isascii():
        disp = f"attachment; filename=\"{filename}\""
        ctype += f"; name=\"{filename}\""
    elif rng.random() < 0.5:  # RFC 2231
        quoted = urllib.parse.quote(filename.encode("utf-8"), safe="")
        disp = f"attachment;\n\tfilename*=UTF-8''{quoted}"
        ctype += f";\n\tname*=UTF-8''{quoted}"
    else:  # what many clients really send: an encoded word in a quoted parameter
        word = f"=?UTF-8?B?{base64.b64encode(filename.encode()).decode()}?="
        disp = f"attachment;\n\tfilename=\"{word}\""
        ctype += f";\n\tname=\"{word}\""
    head = (f"Content-Type: {ctype}\nContent-Transfer-Encoding: base64\nContent-Disposition: {disp}\n\n")
    return head.encode() + base64.encodebytes(data)


def _headers(pairs: list[tuple[str, str]]) -> bytes:
    return "".join(f"{k}: {v}\n" for k, v in pairs).encode("ascii")


def _finish(header_pairs: list[tuple[str, str]], content_type: str, body: bytes,
            cte: str | None = None) -> bytes:
    pairs = header_pairs + [("MIME-Version", "1.0"), ("Content-Type", content_type)]
    if cte:
        pairs.append(("Content-Transfer-Encoding", cte))
    raw = _headers(pairs) + b"\n" + body
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _cte(charset: str, rng: random.Random) -> str:
    if charset == "us-ascii":
        return "7bit"
    if charset == "utf-8":
        return rng.choices(["base64", "quoted-printable", "8bit"], [0.4, 0.3, 0.3])[0]
    if charset == "gbk":
        return rng.choice(["8bit", "base64"])
    return rng.choices(["base64", "8bit"], [0.6, 0.4])[0]


def _text_body(lines: list[str], charset: str, codec: str, rng: random.Random,
               structure: str) -> tuple[str, bytes, str | None]:
    """(Content-Type, body, top-level CTE or None) for plain / alternative / html."""
    text = "\n".join(lines) + "\n"
    cte = _cte(charset, rng)
    if structure == "plain":
        part = _body_part(text, "plain", charset, codec, cte)
        _head, _, body = part.partition(b"\n\n")
        return f"text/plain; charset=\"{charset}\"", body, cte
    markup = _html(lines, charset, rng.randrange(3))
    html_cte = "base64" if cte == "8bit" and rng.random() < 0.5 else cte
    if structure == "html":
        part = _body_part(markup, "html", charset, codec, html_cte)
        _head, _, body = part.partition(b"\n\n")
        return f"text/html; charset=\"{charset}\"", body, html_cte
    ctype, body = _multipart("alternative", [_body_part(text, "plain", charset, codec, cte),
                                             _body_part(markup, "html", charset, codec, html_cte)],
                             _boundary(rng, "alt"))
    return ctype, body, None


def _common_headers(seed: int, index: int, from_: str, subject: str, rng: random.Random,
                    mid: str) -> list[tuple[str, str]]:
    to_name = MAILBOX_NAME_ZH if rng.random() < 0.7 else ""
    to = _address(to_name, MAILBOX_ADDRESS) if to_name else MAILBOX_ADDRESS
    pairs = [("From", from_), ("To", to), ("Subject", subject),
             ("Date", format_datetime(_date(seed, index))), ("Message-ID", f"<{mid}>")]
    mailer = rng.choice(X_MAILERS)
    if mailer:
        pairs.append(("X-Mailer", mailer))
    return pairs


def _complaint(seed: int, item: Item) -> tuple[Meta, bytes]:
    c = _complainant(seed, item.index)
    rng = _rng(seed, item.index, "body")
    lines = _complaint_text(c, _rng(seed, item.index, "text"))
    structure = rng.choices(["plain", "alternative", "html"], [0.4, 0.4, 0.2])[0]
    ctype, body, cte = _text_body(lines, c.charset, c.codec, rng, structure)
    attach = rng.random() < 0.10
    if attach:
        inner = _entity(ctype, body) if cte is None else \
            f"Content-Type: {ctype}\nContent-Transfer-Encoding: {cte}\n\n".encode() + body
        ctype, body = _multipart("mixed", [inner, _attachment(rng)], _boundary(rng, "mix"))
        cte = None
    mid = message_id(seed, item.index)
    sender = _address(c.name, c.address, c.charset if c.charset != "us-ascii" else "utf-8",
                      c.codec if c.codec != "ascii" else "utf-8", c.quoted_name)
    subject_charset = c.charset if c.charset != "us-ascii" else "utf-8"
    subject_codec = c.codec if c.codec != "ascii" else "utf-8"
    headers = _common_headers(seed, item.index, sender, _encoded_words(c.subject, subject_charset,
                                                                       subject_codec), rng, mid)
    raw = _finish(headers, ctype, body, cte)
    return Meta(item.index, NEW, "complaint", mid, c.address, charset=c.charset, lang=c.lang,
                structure=structure,
                attachment=attach, size=len(raw)), raw


def _reply(seed: int, item: Item) -> tuple[Meta, bytes]:
    c = _complainant(seed, item.complaint)
    rng = _rng(seed, item.index, "body")
    refs = tuple(message_id(seed, p) for p in item.parents)
    if c.lang == "zh":
        prefix = rng.choices(["回复：", "Re: ", "回复: ", "RE: ", "答复: "], [0.4, 0.35, 0.1, 0.1, 0.05])[0]
        follow = rng.choice(ZH_FOLLOWUPS).format(**c.slots)
        when = _date(seed, item.parents[-1])
        if rng.random() < 0.5:
            attribution = [f"在 {when.year}年{when.month}月{when.day}日 {when:%H:%M}，"
                           + f"{MAILBOX_NAME_ZH} <{MAILBOX_ADDRESS}> 写道："]
        else:
            attribution = ["------------------ 原始邮件 ------------------",
                           f"发件人: \"{MAILBOX_NAME_ZH}\"<{MAILBOX_ADDRESS}>",
                           f"发送时间: {when.year}年{when.month}月{when.day}日"
                           + f"(星期{'一二三四五六日'[when.weekday()]}) {when:%H:%M}",
                           f"收件人: \"{c.name}\"<{c.address}>", f"主题: {c.subject}"]
        lines = [follow, "", c.name, ""] + attribution
    else:
        prefix = rng.choice(["Re: ", "RE: ", "Re: "])
        follow = rng.choice(EN_FOLLOWUPS).format(**c.slots)
        when = _date(seed, item.parents[-1])
        lines = [follow, "", c.name.split()[0], "",
                 f"On {format_datetime(when)}, {MAILBOX_NAME_EN} <{MAILBOX_ADDRESS}> wrote:"]
    quoted = _complaint_text(c, _rng(seed, c.index, "text"))
    lines += [("> " + line).rstrip() for line in quoted]
    structure = rng.choices(["plain", "alternative", "html"], [0.6, 0.3, 0.1])[0]
    ctype, body, cte = _text_body(lines, c.charset, c.codec, rng, structure)
    mid = message_id(seed, item.index)
    subject_charset = c.charset if c.charset != "us-ascii" else "utf-8"
    subject_codec = c.codec if c.codec != "ascii" else "utf-8"
    subject = _encoded_words(prefix + c.subject, subject_charset, subject_codec)
    sender = _address(c.name, c.address, subject_charset, subject_codec, c.quoted_name)
    headers = _common_headers(seed, item.index, sender, subject, rng, mid)
    headers += [("In-Reply-To", f"<{refs[-1]}>"), ("References", "\n ".join(f"<{r}>" for r in refs))]
    raw = _finish(headers, ctype, body, cte)
    return Meta(item.index, REPLY, "reply", mid, c.address, in_reply_to=refs[-1], references=refs,
                charset=c.charset, lang=c.lang, structure=structure, size=len(raw)), raw


def _auto_sender(seed: int, item: Item) -> str:
    rng = _rng(seed, item.index, "auto-who")
    if item.subkind.startswith("dsn"):
        return f"MAILER-DAEMON@mx{rng.randrange(1, 30)}.example"
    return f"staff{item.index}@corp{rng.randrange(1, 30)}.example"


def _automatic(seed: int, item: Item) -> tuple[Meta, bytes]:
    rng = _rng(seed, item.index, "body")
    sender = _auto_sender(seed, item)
    mid = message_id(seed, item.index)
    ack_id = f"ack.{rng.getrandbits(64):016x}@city.example"
    ack_subject = rng.choice(["您的反馈已受理", f"[#{rng.randrange(1000, 99999)}] 您的反馈已收到",
                              "Your feedback has been received"])
    slots = _slots(rng)
    date = format_datetime(_date(seed, item.index))
    if item.subkind.startswith("oof"):
        zh = rng.random() < 0.6
        name = rng.choice(SURNAMES) + rng.choice(GIVEN) if zh else f"{rng.choice(EN_FIRST)} {rng.choice(EN_LAST)}"
        if zh:
            prefix = rng.choice(["自动回复：", "自动回复: ", "Auto: "])
            text = rng.choice(OOF_ZH).format(name=rng.choice(SURNAMES) + rng.choice(GIVEN), **slots)
        else:
            prefix = rng.choice(["Automatic reply: ", "Out of Office: ", "Auto Reply: "])
            text = rng.choice(OOF_EN).format(**slots)
        pairs: list[tuple[str, str]] = []
        if item.subkind == "oof-return-path":
            pairs.append(("Return-Path", "<>"))
        pairs += [("From", _address(name, sender)), ("To", MAILBOX_ADDRESS),
                  ("Subject", _encoded_words(prefix + ack_subject, "utf-8", "utf-8")), ("Date", date),
                  ("Message-ID", f"<{mid}>"), ("In-Reply-To", f"<{ack_id}>")]
        if item.subkind == "oof":
            pairs.append(("Auto-Submitted", "auto-replied"))
            if rng.random() < 0.5:
                pairs.append(("X-Auto-Response-Suppress", "All"))
        elif item.subkind == "oof-x-autoreply":
            pairs.append(("X-Autoreply", "yes"))
        cte = "base64" if zh else "7bit"
        part = _body_part(text + "\n", "plain", "utf-8" if zh else "us-ascii", "utf-8" if zh else "ascii", cte)
        _head, _, body = part.partition(b"\n\n")
        raw = _finish(pairs, f"text/plain; charset=\"{'utf-8' if zh else 'us-ascii'}\"", body, cte)
        return Meta(item.index, AUTO, item.subkind, mid, sender, size=len(raw)), raw

    # A DSN for an acknowledgement sent to an address outside the corpus.
    host = sender.partition("@")[2]
    rcpt = f"resident{rng.randrange(10**5, 10**6)}@old{rng.randrange(1, 40)}.example"
    queue = f"{rng.getrandbits(40):010X}"
    notice = (f"This is the mail system at host {host}.\n\n"
              "I'm sorry to have to inform you that your message could not\n"
              "be delivered to one or more recipients. It's attached below.\n\n"
              "For further assistance, please send mail to postmaster.\n\n"
              "                   The mail system\n\n"
              f"<{rcpt}>: host mx.{rcpt.partition('@')[2]} said: 550 5.1.1 <{rcpt}>:\n"
              "    Recipient address rejected: User unknown in local recipient table\n")
    status = (f"Reporting-MTA: dns; {host}\nX-Postfix-Queue-ID: {queue}\n"
              f"X-Postfix-Sender: rfc822; {MAILBOX_ADDRESS}\nArrival-Date: {date}\n\n"
              f"Final-Recipient: rfc822; {rcpt}\nOriginal-Recipient: rfc822;{rcpt}\nAction: failed\n"
              f"Status: 5.1.1\nRemote-MTA: dns; mx.{rcpt.partition('@')[2]}\n"
              f"Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown\n")
    orig_headers = (f"Return-Path: <{MAILBOX_ADDRESS}>\n"
                    f"From: {_address(MAILBOX_NAME_ZH, MAILBOX_ADDRESS)}\nTo: <{rcpt}>\n"
                    f"Subject: {_encoded_words(ack_subject, 'utf-8', 'utf-8')}\nDate: {date}\n"
                    f"Message-ID: <{ack_id}>\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n")
    if rng.random() < 0.5:
        original = _entity("text/rfc822-headers", orig_headers.encode())
    else:
        ack_body = base64.encodebytes("您好，您的反馈已收到，我们将尽快处理。\n".encode())
        original = _entity("message/rfc822", (orig_headers + "Content-Type: text/plain; charset=utf-8\n"
                                              "Content-Transfer-Encoding: base64\n\n").encode() + ack_body)
    parts = [
        b"Content-Description: Notification\n" + _entity("text/plain; charset=us-ascii", notice.encode()),
        b"Content-Description: Delivery report\n" + _entity("message/delivery-status", status.encode()),
        b"Content-Description: Undelivered Message\n" + original,
    ]
    ctype, body = _multipart("report", parts, f"{queue}.{rng.getrandbits(32)}/{host}",
                             extra="; report-type=delivery-status")
    subject = rng.choice(["Undelivered Mail Returned to Sender", "Delivery Status Notification (Failure)",
                          "=?UTF-8?B?57O757uf6YCA5L+h?="])  # 系统退信
    pairs = []
    if item.subkind == "dsn-legacy" or rng.random() < 0.5:
        pairs.append(("Return-Path", "<>"))
    pairs += [("From", f"Mail Delivery System <{sender}>"), ("To", MAILBOX_ADDRESS), ("Subject", subject),
              ("Date", date), ("Message-ID", f"<{mid}>")]
    if item.subkind == "dsn":
        pairs.append(("Auto-Submitted", "auto-replied"))
    raw = _finish(pairs, ctype, body)
    return Meta(item.index, AUTO, item.subkind, mid, sender, structure="report", size=len(raw)), raw


if __name__ == "__main__":  # a quick look: python bench/corpus.py 20 | less
    import sys

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    for _m, message in generate_with_meta(count, int(sys.argv[2]) if len(sys.argv) > 2 else 1):
        sys.stdout.buffer.write(message + b"\r\n" + b"=" * 78 + b"\r\n")
