"""Addresses shortened for the logs: ``zhang.san@qq.com`` → ``zh***@qq.com``.

Text that comes from outside (an SMTP server's refusal, which often repeats the recipient; a
parser's complaint about a header) goes through ``mask_addresses`` before it is logged at INFO or
above, so an operator's log names the domain but never the whole address.
"""

from __future__ import annotations

import re

_ADDRESS = re.compile(r"([^\s<>()\[\]\"',;:@]{1,64})@([\w.-]+\.[\w-]+)", re.UNICODE)


def mask_address(address: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local[:2]}***@{domain}" if local else address


def mask_addresses(text: str) -> str:
    """Every address-looking word of ``text`` with its local part shortened to two characters."""
    return _ADDRESS.sub(lambda m: f"{m.group(1)[:2]}***@{m.group(2)}", text)
