"""Person or machine: what made a hit, from what the redirect knows of it.

A hit (open, click, opt-out, mirror page view, web-tracking tag) is a person's unless a signal says a
machine made it: ``apple_mpp`` (Apple Mail Privacy Protection prefetching a message's images),
``scanner`` (a mail-security gateway or link scanner) or ``bot`` (HTTP libraries, crawlers, monitors).
The signals, each conservative because a person counted as a machine is worse than the reverse:

- the client's network, from the built-in table (``machine_data.json``: each range with its kind and
  source) and the operator's own ranges. An ``apple_mpp`` range counts only for an open whose
  User-Agent is exactly ``Mozilla/5.0``: a click from Apple's relays is a person in Safari;
- the User-Agent: case-insensitive substrings naming a library, a headless browser, a crawler;
- the honeypot link and its burst (``honeypot_burst``): applied by the tracking workflow, over all the
  hits of one message, with the ``client_key`` the redirect stores instead of the address.

Standard library only, and no ``ipaddress``: the redirect classifies on its hot path. The range tables
are built once (``Detector``): per address family, sorted disjoint integer intervals searched with
``bisect``; each interval lists the ranges that cover it, the narrowest first. What an operator may
set, and the API's view of it, is ``machine_settings.py``.

Privacy: the full client address is never stored. The redirect classifies with it, keeps the /24 (/48)
network it already keeps, and hands the workflow ``client_key``: a keyed hash per message, enough to
tell "the same address as the honeypot hit" and nothing more.
"""

from __future__ import annotations

import hmac
import json
import socket
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from functools import cache
from heapq import heappop, heappush
from itertools import pairwise
from pathlib import Path

from functions.shared.records import Record

APPLE_MPP = "apple_mpp"
SCANNER = "scanner"
BOT = "bot"
MACHINE_KINDS = (APPLE_MPP, SCANNER, BOT)
APPLE_MPP_USER_AGENT = "Mozilla/5.0"  # all Apple's proxies send, and no person's mail client does

DEFAULT_BURST_SECONDS = 30
# The reason a hit of a honeypot burst is logged and published with (the tracking workflow, events out).
BURST_REASON = "honeypot burst: same address as a honeypot hit on this message"
AGENT_CACHE_SIZE = 4096  # User-Agent verdicts kept per container; emptied when full

DATA_FILE = Path(__file__).with_name("machine_data.json")

Verdict = tuple[str | None, str | None]  # (machine, machine_reason); (None, None) is a person
PERSON: Verdict = (None, None)

_V4_MAPPED = bytes(10) + b"\xff\xff"


class RangeRule(Record):
    __slots__ = ("cidr", "kind", "label", "source")

    def __init__(self, cidr: str, kind: str, label: str = "", source: str = "") -> None:
        self.cidr = cidr
        self.kind = kind
        self.label = label  # whose network: shown in the reason
        self.source = source  # where the range is published ("" for an operator's own)


class AgentRule(Record):
    __slots__ = ("kind", "pattern", "source")

    def __init__(self, pattern: str, kind: str, source: str = "") -> None:
        self.pattern = pattern
        self.kind = kind
        self.source = source


class MachineSettings(Record):
    """What an operator sets (``PUT /api/settings/machine-detection``), validated by
    ``machine_settings.validate_settings``."""

    __slots__ = ("burst_seconds", "honeypot", "ranges", "user_agents")

    def __init__(
        self,
        ranges: tuple[RangeRule, ...] = (),
        user_agents: tuple[AgentRule, ...] = (),
        honeypot: bool = True,
        burst_seconds: int = DEFAULT_BURST_SECONDS,
    ) -> None:
        self.ranges = ranges
        self.user_agents = user_agents
        self.honeypot = honeypot
        self.burst_seconds = burst_seconds


class Builtin(Record):
    __slots__ = ("ranges", "updated", "user_agents")

    def __init__(
        self, ranges: tuple[RangeRule, ...], user_agents: tuple[AgentRule, ...], updated: str
    ) -> None:
        self.ranges = ranges
        self.user_agents = user_agents
        self.updated = updated


# --- addresses as integers ----------------------------------------------------------------------


def address_key(address: str | None) -> tuple[int, int] | None:
    """``(family, integer)`` of an IPv4 or IPv6 address (an IPv4-mapped IPv6 one counts as IPv4), or
    ``None`` when it is not an address."""
    if not address:
        return None
    try:
        if ":" in address:
            packed = socket.inet_pton(socket.AF_INET6, address)
            if packed[:12] == _V4_MAPPED:
                return 4, int.from_bytes(packed[12:], "big")
            return 6, int.from_bytes(packed, "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except (OSError, ValueError):
        return None


def parse_cidr(cidr: object) -> tuple[int, int, int]:
    """``(family, first, last)`` of a network in CIDR notation; ``ValueError`` saying what is wrong.

    Strict like ``ipaddress.ip_network``: an address with host bits set is refused, not widened.
    """
    if not isinstance(cidr, str) or cidr.count("/") != 1:
        raise ValueError(f"{cidr!r} is not in CIDR notation (address/prefix)")
    address, prefix_text = cidr.strip().split("/")
    if not (prefix_text.isascii() and prefix_text.isdigit()) or len(prefix_text) > 3:
        raise ValueError(f"{cidr!r} has no valid prefix length")
    try:
        if ":" in address:
            family, bits = 6, 128
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
        else:
            family, bits = 4, 32
            value = int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
    except (OSError, ValueError):
        raise ValueError(f"{cidr!r} is not an IP network") from None
    prefix = int(prefix_text)
    if prefix > bits:
        raise ValueError(f"{cidr!r}: the prefix length is above {bits}")
    host_bits = bits - prefix
    if value & ((1 << host_bits) - 1):
        raise ValueError(f"{cidr!r} has host bits set")
    return family, value, value + (1 << host_bits) - 1


# --- the detector -------------------------------------------------------------------------------


class _RangeTable:
    """Sorted disjoint intervals of one address family, each with the verdicts of the ranges covering
    it (narrowest first), found with one ``bisect``."""

    __slots__ = ("covering", "ends", "starts")

    def __init__(self, spans: list[tuple[int, int, int, tuple[str, str, str]]]) -> None:
        # spans: (first, last, order, (kind, reason, gate)); order breaks ties between equal ranges.
        starts: list[int] = []
        ends: list[int] = []
        covering: list[tuple[tuple[str, str, str], ...]] = []
        boundaries = sorted({s[0] for s in spans} | {s[1] + 1 for s in spans})
        by_start = sorted(spans)
        active: list[tuple[int, int, int, tuple[str, str, str]]] = []  # heap by last address
        next_span = 0
        for low, high in pairwise(boundaries):
            while next_span < len(by_start) and by_start[next_span][0] <= low:
                first, last, order, verdict = by_start[next_span]
                heappush(active, (last, order, first, verdict))
                next_span += 1
            while active and active[0][0] < low:
                heappop(active)
            if not active:
                continue
            # The narrowest range first (CIDR blocks nest or are disjoint), then the earlier listed.
            found = tuple(v for _, _, _, v in sorted(active, key=lambda a: (a[0] - a[2], a[1])))
            if starts and ends[-1] == low - 1 and covering[-1] == found:
                ends[-1] = high - 1
            else:
                starts.append(low)
                ends.append(high - 1)
                covering.append(found)
        self.starts = starts
        self.ends = ends
        self.covering = covering

    def find(self, value: int) -> tuple[tuple[str, str, str], ...]:
        index = bisect_right(self.starts, value) - 1
        if index >= 0 and value <= self.ends[index]:
            return self.covering[index]
        return ()


class Detector:
    """Classifies one hit. Build it once (per container, per settings change): ``detector(settings)``."""

    __slots__ = ("_agent_verdicts", "_agents", "_tables")

    def __init__(self, ranges: Iterable[RangeRule], user_agents: Iterable[AgentRule]) -> None:
        spans: dict[int, list[tuple[int, int, int, tuple[str, str, str]]]] = {4: [], 6: []}
        for order, rule in enumerate(ranges):
            family, first, last = parse_cidr(rule.cidr)
            if rule.kind not in MACHINE_KINDS:
                raise ValueError(f"unknown machine kind {rule.kind!r} for {rule.cidr}")
            who = f" ({rule.label})" if rule.label else ""
            if rule.kind == APPLE_MPP:
                reason = f"open with User-Agent {APPLE_MPP_USER_AGENT} from {rule.cidr}{who}"
                verdict = (APPLE_MPP, reason, "open")
            else:
                verdict = (rule.kind, f"network {rule.cidr}{who}", "")
            spans[family].append((first, last, order, verdict))
        self._tables = {family: _RangeTable(found) for family, found in spans.items()}
        # Lower-case substring tests over a short tuple: measured faster than one combined regular
        # expression (bench/fig9_machine_detection.py) and it keeps the listed order (operator first).
        agents: list[tuple[str, Verdict]] = []
        seen: set[str] = set()
        for agent in user_agents:
            pattern = agent.pattern.lower()
            if pattern and pattern not in seen:
                seen.add(pattern)
                agents.append((pattern, (agent.kind, f"User-Agent {agent.pattern}")))
        self._agents = tuple(agents)
        self._agent_verdicts: dict[str, Verdict] = {}  # a campaign's hits repeat a few User-Agents

    def classify(self, kind: str, source_ip: str | None, user_agent: str | None) -> Verdict:
        """``(machine, machine_reason)`` of one hit; ``(None, None)`` for a person."""
        found = address_key(source_ip)
        if found is not None:
            for machine, reason, gate in self._tables[found[0]].find(found[1]):
                if not gate:
                    return machine, reason
                if kind == gate and user_agent == APPLE_MPP_USER_AGENT:
                    return machine, reason
        if not user_agent:
            return PERSON
        verdict = self._agent_verdicts.get(user_agent)
        if verdict is None:
            verdict = self.match_user_agent(user_agent)
            if len(self._agent_verdicts) >= AGENT_CACHE_SIZE:
                self._agent_verdicts.clear()
            self._agent_verdicts[user_agent] = verdict
        return verdict

    def match_user_agent(self, user_agent: str) -> Verdict:
        """The first listed pattern found in the User-Agent, without the cache."""
        lowered = user_agent.lower()
        for pattern, verdict in self._agents:
            if pattern in lowered:
                return verdict
        return PERSON


# --- the built-in lists and the operator's -----------------------------------------------------


@cache
def builtin() -> Builtin:
    """The shipped ranges and patterns (``machine_data.json``), read once per container."""
    document = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    return Builtin(
        ranges=tuple(
            RangeRule(r["cidr"], r["kind"], r.get("label", ""), r.get("source", ""))
            for r in document["ranges"]
        ),
        user_agents=tuple(
            AgentRule(a["pattern"], a["kind"], a.get("source", "")) for a in document["user_agents"]
        ),
        updated=document["updated"],
    )


def detector(settings: MachineSettings | None = None) -> Detector:
    """The built-in lists merged with the operator's: the operator's come first, so their kind wins
    where an operator range or pattern equals a built-in one."""
    shipped = builtin()
    own = settings or MachineSettings()
    return Detector((*own.ranges, *shipped.ranges), (*own.user_agents, *shipped.user_agents))


@cache
def default_detector() -> Detector:
    return detector()


# --- the honeypot and its burst -----------------------------------------------------------------


def client_key(secret: bytes, message: str, address: str | None) -> str | None:
    """What the workflow may store of a client address: 16 hex characters of
    HMAC-SHA256(secret, message + NUL + packed address).

    Keyed, because an unkeyed hash of an IPv4 address is reversed by trying all 2³² of them; per
    message, so the key links the hits on one message (all the burst rule needs) and nothing across
    messages or recipients. 64 bits: two addresses on one message collide with odds of 1 in 2⁶⁴.
    The packed form makes every spelling of one address (and an IPv4-mapped IPv6 one) one key.
    ``None`` when there is no valid address.
    """
    if not address:
        return None
    try:
        if ":" in address:
            packed = socket.inet_pton(socket.AF_INET6, address)
            if packed[:12] == _V4_MAPPED:
                packed = packed[12:]
        else:
            packed = socket.inet_pton(socket.AF_INET, address)
    except (OSError, ValueError):
        return None
    # The digest's name, not hashlib.sha256: with a name, hmac.digest takes OpenSSL's one-shot path.
    return hmac.digest(secret, message.encode() + b"\0" + packed, "sha256")[:8].hex()


class BurstHit(Record):
    __slots__ = ("at", "client", "honeypot")

    def __init__(self, at: float, client: str | None, honeypot: bool = False) -> None:
        self.at = at  # seconds from any fixed origin (e.g. ``datetime.timestamp()``)
        self.client = client  # ``client_key`` of the address; ``None`` when unknown
        self.honeypot = honeypot  # a hit on the message's honeypot link


def honeypot_burst(hits: Sequence[BurstHit], burst_seconds: int) -> list[Verdict | None]:
    """For the hits of one message: a scanner verdict for each honeypot hit and for each hit from the
    same client within ``burst_seconds`` (before or after) of one; ``None`` where the rule says nothing.

    Pure and order-free: a late honeypot hit reclassifies earlier hits whatever batch they came in.
    """
    honeypot_times: dict[str, list[float]] = {}
    for hit in hits:
        if hit.honeypot and hit.client is not None:
            honeypot_times.setdefault(hit.client, []).append(hit.at)
    for times in honeypot_times.values():
        times.sort()
    burst_reason = f"same address as a honeypot hit within {burst_seconds} s"
    verdicts: list[Verdict | None] = []
    for hit in hits:
        if hit.honeypot:
            verdicts.append((SCANNER, "honeypot link"))
            continue
        around = honeypot_times.get(hit.client) if hit.client is not None else None
        if around:
            index = bisect_right(around, hit.at + burst_seconds) - 1  # the last honeypot not after the window
            if index >= 0 and around[index] >= hit.at - burst_seconds:
                verdicts.append((SCANNER, burst_reason))
                continue
        verdicts.append(None)
    return verdicts


def with_burst(verdicts: Sequence[Verdict], burst: Sequence[Verdict | None]) -> list[Verdict]:
    """Each hit's final verdict: the honeypot rule's where it speaks (it sees the whole message), else
    the hit's own from ``Detector.classify``."""
    return [said if said is not None else own for own, said in zip(verdicts, burst, strict=True)]
