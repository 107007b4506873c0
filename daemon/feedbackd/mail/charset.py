"""Bytes → str for mail bodies and headers, tolerant of what Chinese mail clients really send.

Declared charsets are widened to their supersets (gb2312 → gb18030, big5 → big5hkscs) because
senders routinely declare gb2312 and then use GBK characters (镕, 喆).  Each decoder returns the
text plus an optional short note that the caller files as a defect; nothing here raises.
"""

from __future__ import annotations

import binascii
import codecs
import quopri
import re

# Declared names mapped to the codec we actually decode with (supersets, or Python spellings).
_ALIASES: dict[str, str] = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "ms936": "gb18030",
    "windows-936": "gb18030",
    "euc-cn": "gb18030",
    "x-euc-cn": "gb18030",
    "csgb2312": "gb18030",
    "gb_2312-80": "gb18030",
    "chinese": "gb18030",
    "hz-gb-2312": "hz",
    "big5": "big5hkscs",
    "big-5": "big5hkscs",
    "x-big5": "big5hkscs",
    "cn-big5": "big5hkscs",
    "csbig5": "big5hkscs",
    "cp950": "big5hkscs",
    "ks_c_5601-1987": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
    "x-unknown": "",
    "unknown-8bit": "",
    "x-user-defined": "",
    "default": "",
}

# Declarations that can never be "wrong" for 8-bit data (every byte decodes), so mislabelled
# UTF-8 or GBK hides behind them; they get an extra plausibility check.
_SINGLE_BYTE_WESTERN = frozenset({"latin-1", "iso8859-1", "cp1252", "iso8859-15"})

# Frequent Chinese characters, simplified and traditional.  Scoring a candidate decoding by how
# many of its characters are frequent tells GBK from Big5: the wrong one yields rare characters.
_FREQUENT = frozenset(
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后"
    "作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开但因只"
    "从想实日者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将两高间由问很最重并物手应向头文"
    "体政美相见被利什二等产或新己制身果加西月话合回特代内信表化老给世位次度门任常先海通教儿原东声提立及"
    "比员解水名真论处走义各入几口认条平系气题活更别打女变四总何电数安少报才结反受目太量再感建务做接必场"
    "件计管期市直资命山金指许统区保至形社便空决治展马司五基眼书非则听白却界达光放强即像难且权思完设式路"
    "记南品住告类求据程北边张该交规万取望觉术领共确传师观清今切院让识候带导争运收根造言联持组每济车亲极"
    "服快办议往元证近失转令准布始怎呢存未远叫台单影具字爱流备连调深商算质团集百需价花华城级整府离况请技"
    "际约示复病息究线似官火断精满支视消越器容照须九增研写称企八功吗包片史委乎查轻易早曾除农找装广显吧标"
    "谈吃图念六引历首医局突专费号尽另周较注语仅考落青随选列红响虽推势参希古众构房半节土投某案黑维划致律"
    "足态护七兴派孩验责营星够章音跟志底站严例防供效续施留讲型料终答紧黄绝察母京段依批群项故按河米围江害"
    "双境客纪采举杀父密低朝友诉止细愿千值仍男钱破网热助倒育属坐限速刻乐否刚毛状率甚独般普怕校苦创假久错"
    "承印晚试拿预谁益阳若哪微继送急血惊伤素药适波夜省初喜卫源食险待述陆习置居劳财环排福纳欢警获模充负停"
    "木游疑层冷射略范句室异激村策演简罪判担州静退既衣您宗积余痛检差富协角占配征修皮降阶审坚善读超免压银"
    "买养怀执副乱抗犯追帮宣佳归谢噪垃圾楼租物邮箱附件回复转发"
    "這個們來為國說時會對於著過發後裡種經麼學現當沒動還進樣理從實無與長機開關點業將兩間問並應頭體見產"
    "給話東聲員處義幾認條系氣題別變總電數報結務場計資許統區傳師觀讓識帶導爭運聯組濟車親極辦議遠單愛備連"
    "調團價華級離況請際約復線斷滿視須寫稱嗎顯標談圖歷醫專費號盡較語僅隨選紅響雖勢參眾構節維劃護興驗責營"
    "夠嚴續講終緊黃絕紀採舉殺願錢網熱屬樂剛狀獨創錯試預誰陽繼驚傷藥適衛險陸習勞財環歡獲負遊層範簡擔靜餘"
    "檢協審堅讀壓銀買養懷亂幫歸謝郵件覆轉臺灣"
)

_CJK_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+?)\?([bBqQ])\?([^?]*?)\?=")
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")
_NON_ASCII_RUN = re.compile("[^\x00-\x7f]+")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_NEWLINES = re.compile(r"\r\n?")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def codec_for(charset: str | None) -> str | None:
    """The Python codec to decode a declared charset with, or None when it is unknown or empty."""
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    if "*" in name:  # RFC 2231 language suffix in encoded words: utf-8*zh
        name = name.split("*", 1)[0]
    name = _ALIASES.get(name, name)
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):
        return None


def decode_bytes(data: bytes, charset: str | None = None) -> tuple[str, str | None]:
    """Decode ``data`` declared as ``charset``; the note says what fallback was needed, if any."""
    codec = codec_for(charset)
    if codec is not None:
        try:
            text = data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            pass
        else:
            if codec in _SINGLE_BYTE_WESTERN and not data.isascii():
                better = _mislabelled_western(data)
                if better is not None:
                    return _clean(data.decode(better)), f"charset {charset} looks like {better}"
            return _clean(text), None
    if data.isascii():
        # Pure ASCII: any ASCII-compatible label is right; an unknown label costs nothing here.
        return _clean(data.decode("ascii")), None if codec or not charset else f"unknown charset {charset}"
    text, used = guess_decode(data)
    if not charset:
        return text, f"undeclared 8-bit, decoded as {used}"
    if codec is None:
        return text, f"unknown charset {charset}, decoded as {used}"
    return text, f"charset {charset} failed, decoded as {used}"


def guess_decode(data: bytes) -> tuple[str, str]:
    """Decode undeclared or mislabelled bytes: UTF-8, then GB18030 vs Big5-HKSCS by character frequency."""
    try:
        return _clean(data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    candidates: list[tuple[int, str, str]] = []
    for codec in ("gb18030", "big5hkscs"):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        candidates.append((_frequency_score(text), codec, text))
    if candidates:
        # max() keeps the first on a tie: GB18030 wins ties, as most senders here are mainland.
        score, codec, text = max(candidates, key=lambda c: c[0])
        if score == 0 or _PRIVATE_USE.search(text):
            western = _western_guess(data)
            if western is not None:
                return western, "cp1252"
        return _clean(text), codec
    western = _western_guess(data)
    if western is not None:
        return western, "cp1252"
    normalized = _normalizer_guess(data)
    if normalized is not None:
        return normalized
    return _clean(data.decode("utf-8", errors="replace")), "utf-8 with replacement"


def _frequency_score(text: str) -> int:
    """Frequent characters in a sample (the first 20 000 characters are plenty to decide)."""
    return sum(1 for ch in text[:20_000] if ch in _FREQUENT)


def _western_guess(data: bytes) -> str | None:
    """Latin text read as GBK gives rare ideographs; accept cp1252 when its accents sit inside words."""
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    for run in _NON_ASCII_RUN.finditer(text):
        before = text[run.start() - 1 : run.start()]
        after = text[run.end() : run.end() + 1]
        word = run.group()
        if len(word) > 2 or not word.isalpha() or not (before.isalpha() or after.isalpha()):
            return None
    return _clean(text)


def _mislabelled_western(data: bytes) -> str | None:
    """UTF-8 or GBK hiding behind a Latin-1 label (every byte "decodes" as Latin-1)."""
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        return None
    cjk = len(_CJK_RE.findall(text))
    if cjk >= 4 and _frequency_score(text) * 3 >= cjk:
        return "gb18030"
    return None


def _normalizer_guess(data: bytes) -> tuple[str, str] | None:
    """Last resort before replacement characters: charset-normalizer, imported lazily (it is slow)."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    try:
        best = from_bytes(data).best()
    except Exception:  # noqa: BLE001 - a third-party heuristic must not break parsing
        return None
    if best is None or best.encoding.startswith(("utf_16", "utf_32")):
        return None  # 8-bit mail text is never UTF-16; such a guess is noise
    return _clean(str(best)), best.encoding


def _clean(text: str) -> str:
    """Drop NUL and C0 controls other than tab/newline (PostgreSQL refuses NUL in text)."""
    if _CONTROL.search(text):
        text = _CONTROL.sub("", text)
    return text


def to_text(value: str) -> str:
    """Make a str safe to store: no lone surrogates (they cannot be encoded), no NUL."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", errors="replace").decode("utf-8")
    return _clean(value)


def raw_header_bytes(value: str) -> bytes | None:
    """The original bytes of a compat32 header value that carried raw 8-bit data, else None."""
    if value.isascii():
        return None
    try:
        return value.encode("ascii", errors="surrogateescape")
    except UnicodeEncodeError:
        return None  # real non-ASCII characters (already text), not smuggled bytes


def unfold(value: str) -> str:
    """RFC 5322 unfolding: a line break followed by white space is removed."""
    if "\n" in value:
        value = _FOLD.sub("", value)
        value = _NEWLINES.sub(" ", value).replace("\n", " ")
    return value


def decode_header(value: str | bytes) -> tuple[str, str | None]:
    """Decode one header value: raw 8-bit, then RFC 2047 encoded words (also inside quotes)."""
    note: str | None = None
    if isinstance(value, bytes):
        raw: bytes | None = value
        value = value.decode("ascii", errors="surrogateescape")
    else:
        raw = raw_header_bytes(value)
    if raw is not None:
        value, note = decode_bytes(raw)
        if note:
            note = f"raw 8-bit header, {note.split(', ')[-1]}"
    value = unfold(value)
    if "=?" in value:
        value, ew_note = decode_encoded_words(value)
        note = note or ew_note
    return to_text(value), note


def decode_encoded_words(value: str) -> tuple[str, str | None]:
    """Decode RFC 2047 words, joining adjacent words of one charset before decoding (split characters)."""
    out: list[str] = []
    notes: list[str] = []
    pending: bytearray = bytearray()
    pending_charset = ""
    pos = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending:
            text, note = decode_bytes(bytes(pending), pending_charset)
            out.append(text)
            if note:
                notes.append(f"encoded word: {note}")
        pending = bytearray()
        pending_charset = ""

    for match in _ENCODED_WORD.finditer(value):
        between = value[pos : match.start()]
        if between and not (pending and between.isspace()):
            flush()
            out.append(between)
        charset, encoding, payload = match.groups()
        if pending and charset.lower() != pending_charset.lower():
            flush()
        pending += _decode_word_payload(encoding, payload)
        pending_charset = charset
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out), notes[0] if notes else None


def _decode_word_payload(encoding: str, payload: str) -> bytes:
    data = payload.encode("utf-8", errors="surrogateescape")  # ASCII, unless 8-bit crept in
    if encoding in "bB":
        data = data.strip()
        data += b"=" * (-len(data) % 4)
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            try:
                return binascii.a2b_base64(data.rstrip(b"=")[: len(data.rstrip(b"=")) // 4 * 4])
            except binascii.Error:
                return data
    return quopri.decodestring(data.replace(b"_", b" "), header=False)


def cjk_count(text: str) -> int:
    """How many CJK ideographs ``text`` holds (for language detection)."""
    return len(_CJK_RE.findall(text))
