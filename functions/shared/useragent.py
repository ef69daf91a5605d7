"""User agents turned into the browser, operating system and device a report shows.

Used by the tracking workflow only (never on the redirect path: ua-parser's import and regexes cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ua_parser import parse

from functions.shared.limits import MAX_NAME_BYTES, utf8_prefix

_MAIL_CLIENT_MARKERS = (
    ("GoogleImageProxy", "Gmail image proxy"),
    ("YahooMailProxy", "Yahoo image proxy"),
    ("Microsoft Outlook", "Outlook"),
    ("Outlook-iOS", "Outlook"),
    ("Thunderbird", "Thunderbird"),
)


@dataclass(frozen=True)
class Client:
    browser: str
    os: str
    device: str  # desktop, mobile, tablet, bot, proxy, other


@lru_cache(maxsize=4096)
def parse_user_agent(user_agent: str | None) -> Client:
    if not user_agent:
        return Client("Unknown", "Unknown", "other")
    result = parse(user_agent)
    browser = result.user_agent.family if result.user_agent else "Other"
    os_name = result.os.family if result.os else "Other"
    for marker, name in _MAIL_CLIENT_MARKERS:
        if marker in user_agent:
            browser = name
            break
    # A User-Agent may claim any name: the logs and breakdowns keep at most MAX_NAME_BYTES of it.
    return Client(
        utf8_prefix(browser, MAX_NAME_BYTES),
        utf8_prefix(os_name, MAX_NAME_BYTES),
        _device_type(user_agent, result),
    )


def _device_type(user_agent: str, result: object) -> str:
    lowered = user_agent.lower()
    if "googleimageproxy" in lowered or "yahoomailproxy" in lowered:
        return "proxy"
    device = getattr(result, "device", None)
    family = (device.family if device else "") or ""
    if family == "Spider" or "bot" in lowered or "crawler" in lowered or "spider" in lowered:
        return "bot"
    if "ipad" in lowered or "tablet" in lowered or ("android" in lowered and "mobile" not in lowered):
        return "tablet"
    if "mobi" in lowered or "iphone" in lowered or "android" in lowered:
        return "mobile"
    if any(word in lowered for word in ("windows", "macintosh", "x11", "linux", "cros")):
        return "desktop"
    return "other"
