"""Machine detection: a hit's network and User-Agent, the honeypot burst, the client key, the data file."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from functions.shared import machine, machine_settings
from functions.shared.machine import (
    APPLE_MPP_USER_AGENT,
    AgentRule,
    BurstHit,
    Detector,
    MachineSettings,
    RangeRule,
    address_key,
    client_key,
    default_detector,
    detector,
    honeypot_burst,
    parse_cidr,
    with_burst,
)

OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.18129; Pro)"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
IOS_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)
GOOGLE_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
SECRET = b"client-key-secret-0123456789abcdef"


# --- networks -----------------------------------------------------------------------------------


def test_an_open_from_apples_relay_with_the_bare_user_agent_is_an_mpp_prefetch() -> None:
    # Given the built-in lists
    # When Apple's proxy loads the pixel: User-Agent exactly Mozilla/5.0, from a relay egress block
    verdict = default_detector().classify("open", "172.225.46.9", "Mozilla/5.0")
    # Then it is an MPP prefetch, and the reason names the signal
    assert verdict == (
        "apple_mpp",
        "open with User-Agent Mozilla/5.0 from 172.225.0.0/16 (iCloud Private Relay egress)",
    )
    assert default_detector().classify("open", "17.58.101.4", "Mozilla/5.0")[0] == "apple_mpp"
    assert default_detector().classify("open", "2a02:26f7:b3c0:4000::12", "Mozilla/5.0")[0] == "apple_mpp"


def test_apples_networks_alone_make_no_machine() -> None:
    # Given the same relay address
    found = default_detector()
    # When a person clicks through Private Relay in Safari, or Apple Mail without MPP loads the pixel
    # Then both are people: the apple_mpp range needs an open with the bare User-Agent
    assert found.classify("click", "172.225.46.9", IOS_SAFARI) == (None, None)
    assert found.classify("click", "172.225.46.9", "Mozilla/5.0") == (None, None)
    assert found.classify("open", "172.225.46.9", IOS_SAFARI) == (None, None)
    assert found.classify("open", "17.58.101.4", "Mozilla/5.0 ") == (None, None)  # not exactly
    # And the bare User-Agent from elsewhere is no MPP prefetch either
    assert found.classify("open", "203.0.113.9", "Mozilla/5.0") == (None, None)


def test_hits_from_published_gateway_networks_are_scanner_hits() -> None:
    found = default_detector()
    assert found.classify("click", "40.107.22.91", CHROME) == (
        "scanner",
        "network 40.107.0.0/16 (Microsoft Exchange Online Protection)",
    )
    assert found.classify("open", "2a01:111:f403:c201::3", CHROME)[0] == "scanner"
    assert found.classify("click", "205.139.110.61", CHROME)[1] == "network 205.139.110.0/24 (Mimecast)"
    assert found.classify("click", "::ffff:205.139.110.61", CHROME)[0] == "scanner"  # IPv4-mapped
    assert found.classify("opt_out", "67.231.149.52", CHROME)[0] == "scanner"
    assert found.classify("click", "209.222.82.31", CHROME)[0] == "scanner"


def test_people_behind_mail_proxies_and_desktop_clients_stay_people() -> None:
    found = default_detector()
    assert found.classify("open", "66.249.84.200", GOOGLE_PROXY) == (None, None)
    assert found.classify("open", "98.137.27.103", YAHOO_PROXY) == (None, None)
    assert found.classify("open", "198.51.100.23", OUTLOOK) == (None, None)
    assert found.classify("click", "198.51.100.23", CHROME) == (None, None)


def test_the_operators_narrower_range_wins_over_a_built_in_one() -> None:
    # Given an operator who knows 17.1.0.0/16 is their own monitoring
    own = MachineSettings(ranges=(RangeRule("17.1.0.0/16", "bot"),))
    found = detector(own)
    # When a bare Mozilla/5.0 open comes from it, and another from the rest of 17.0.0.0/8
    # Then the narrowest range speaks first
    assert found.classify("open", "17.1.2.3", "Mozilla/5.0") == ("bot", "network 17.1.0.0/16")
    assert found.classify("open", "17.2.2.3", "Mozilla/5.0")[0] == "apple_mpp"


def test_an_operator_range_equal_to_a_built_in_one_takes_the_operators_kind() -> None:
    found = detector(MachineSettings(ranges=(RangeRule("40.107.0.0/16", "bot"),)))
    assert found.classify("click", "40.107.1.1", CHROME) == ("bot", "network 40.107.0.0/16")


def test_an_operator_apple_mpp_range_is_gated_like_the_built_in_ones() -> None:
    found = detector(MachineSettings(ranges=(RangeRule("2001:db8:aa::/48", "apple_mpp"),)))
    assert found.classify("open", "2001:db8:aa::1", "Mozilla/5.0")[0] == "apple_mpp"
    assert found.classify("click", "2001:db8:aa::1", "Mozilla/5.0") == (None, None)


def test_addresses_that_are_not_addresses_classify_by_user_agent_alone(reliability: Any) -> None:
    hostile = [
        "",
        "not-an-ip",
        "1.2.3.4.5",
        "::g",
        "999.1.1.1",
        "17.0.0.1/8",
        "fe80::1%eth0",
        "\x00",
        "1" * 5000,
    ]
    found = default_detector()
    for address in hostile:
        assert found.classify("open", address, "Mozilla/5.0") == (None, None)
        assert found.classify("click", address, "curl/8.5.0")[0] == "bot"
    assert found.classify("click", None, None) == (None, None)
    reliability.record(
        "Bad input",
        "malformed client addresses given to machine detection",
        len(hostile),
        "no range verdict, no exception: the User-Agent alone decides",
    )


@st.composite
def networks(draw: st.DrawFn) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if draw(st.booleans()):
        prefix = draw(st.integers(8, 32))
        address = ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1)))
        return ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    prefix = draw(st.integers(16, 128))
    address6 = ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1)))
    return ipaddress.ip_network(f"{address6}/{prefix}", strict=False)


def _addresses_near(found: list[Any]) -> st.SearchStrategy[str]:
    """Addresses inside, at the edges of, and just outside the given networks, and anywhere."""
    picks: list[st.SearchStrategy[str]] = [
        st.integers(0, 2**32 - 1).map(lambda v: str(ipaddress.IPv4Address(v))),
        st.integers(0, 2**128 - 1).map(lambda v: str(ipaddress.IPv6Address(v))),
    ]
    for network in found:
        top = 2**network.max_prefixlen - 1
        first, last = int(network.network_address), int(network.broadcast_address)
        kind = type(network.network_address)
        picks.append(st.integers(first, last).map(lambda v, k=kind: str(k(v))))
        picks.append(
            st.sampled_from([max(first - 1, 0), first, last, min(last + 1, top)]).map(
                lambda v, k=kind: str(k(v))
            )
        )
    return st.one_of(picks)


@settings(max_examples=60)
@given(st.lists(networks(), min_size=1, max_size=12), st.data())
def test_the_range_table_agrees_with_ipaddress(found: list[Any], data: st.DataObject) -> None:
    # Given random networks, nested or not, each listed with a kind
    rules = [RangeRule(str(n), "scanner" if i % 2 else "bot") for i, n in enumerate(found)]
    table = Detector(rules, ())
    for _ in range(20):
        address = data.draw(_addresses_near(found))
        # When an address is classified
        verdict = table.classify("click", address, None)
        # Then the verdict is the narrowest containing network's, the earlier listed on a tie
        parsed = ipaddress.ip_address(address)
        if parsed.version == 6 and parsed.ipv4_mapped is not None:
            parsed = parsed.ipv4_mapped  # an IPv4-mapped IPv6 address counts as IPv4 (machine.address_key)
        containing = [
            (n.num_addresses, i) for i, n in enumerate(found) if parsed.version == n.version and parsed in n
        ]
        if not containing:
            assert verdict == (None, None)
        else:
            index = min(containing)[1]
            assert verdict == (rules[index].kind, f"network {rules[index].cidr}")


@given(st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 2**128 - 1), st.integers(0, 128))
def test_parse_cidr_agrees_with_ipaddress(v4: int, p4: int, v6: int, p6: int) -> None:
    for text in (f"{ipaddress.IPv4Address(v4)}/{p4}", f"{ipaddress.IPv6Address(v6)}/{p6}"):
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            with pytest.raises(ValueError):
                parse_cidr(text)
            continue
        assert parse_cidr(text) == (
            network.version,
            int(network.network_address),
            int(network.broadcast_address),
        )


@given(st.text(max_size=40))
def test_parse_cidr_refuses_what_ipaddress_refuses(text: str) -> None:
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        with pytest.raises(ValueError):
            parse_cidr(text)
        return
    assume("/" in text)  # ipaddress also takes a bare address; the settings want the prefix written
    assert parse_cidr(text)[1:] == (int(network.network_address), int(network.broadcast_address))


# --- user agents --------------------------------------------------------------------------------

BUILT_IN_PATTERNS = [a.pattern for a in machine.builtin().user_agents]


@given(st.sampled_from(BUILT_IN_PATTERNS), st.text(max_size=30), st.text(max_size=30), st.booleans())
def test_any_user_agent_holding_a_built_in_pattern_is_a_bot(
    pattern: str, before: str, after: str, upper: bool
) -> None:
    user_agent = before + (pattern.upper() if upper else pattern) + after
    machine_kind, reason = default_detector().classify("click", "203.0.113.9", user_agent)
    assert machine_kind == "bot"
    assert reason is not None and reason.startswith("User-Agent ")


@given(st.text(max_size=80))
def test_a_user_agent_without_any_pattern_is_a_person(text: str) -> None:
    lowered = text.lower()
    assume(not any(p in lowered for p in BUILT_IN_PATTERNS))
    assert default_detector().classify("click", "203.0.113.9", text) == (None, None)


def test_the_user_agent_cache_keeps_its_bound_and_its_answers() -> None:
    found = detector()
    for n in range(machine.AGENT_CACHE_SIZE + 10):
        assert found.classify("click", None, f"Mozilla/5.0 Person/{n}") == (None, None)
        assert found.classify("click", None, f"curl/{n}")[0] == "bot"
    assert len(found._agent_verdicts) <= machine.AGENT_CACHE_SIZE


def test_an_operator_pattern_matches_case_insensitively_before_the_built_in_ones() -> None:
    found = detector(
        MachineSettings(user_agents=(AgentRule("Acme-LinkCheck", "scanner"), AgentRule("curl", "scanner")))
    )
    assert found.classify("click", None, "Mozilla/5.0 acme-linkcheck/2") == (
        "scanner",
        "User-Agent Acme-LinkCheck",
    )
    assert found.classify("click", None, "curl/8.5.0") == ("scanner", "User-Agent curl")


# --- the honeypot burst -------------------------------------------------------------------------


def test_a_honeypot_hit_makes_the_same_clients_hits_within_the_window_scanner_hits() -> None:
    # Given a message's hits: a gateway (client g) around its honeypot hit, a person (client p)
    hits = [
        BurstHit(0.0, "g", False),
        BurstHit(25.0, "g", True),
        BurstHit(50.0, "g", False),  # 25 s after: inside a 30 s window
        BurstHit(55.0, "g", False),  # 30 s after: the window's edge is inside
        BurstHit(56.0, "g", False),  # 31 s after: outside
        BurstHit(-5.0, "g", False),  # 30 s before: inside
        BurstHit(26.0, "p", False),  # another address at the same moment
        BurstHit(27.0, None, False),  # no address known
    ]
    # When the rule runs with a 30 s window
    verdicts = honeypot_burst(hits, 30)
    # Then
    burst = ("scanner", "same address as a honeypot hit within 30 s")
    assert verdicts == [burst, ("scanner", "honeypot link"), burst, burst, None, burst, None, None]


def test_the_burst_verdict_overrides_a_hits_own_verdict() -> None:
    own = [(None, None), ("bot", "User-Agent curl"), (None, None)]
    said = [("scanner", "honeypot link"), ("scanner", "x"), None]
    assert with_burst(own, said) == [("scanner", "honeypot link"), ("scanner", "x"), (None, None)]


@st.composite
def burst_hits(draw: st.DrawFn) -> list[BurstHit]:
    count = draw(st.integers(0, 25))
    return [
        BurstHit(
            draw(st.floats(0, 300, allow_nan=False)),
            draw(st.sampled_from(["a", "b", "c", None])),
            draw(st.booleans()) and draw(st.booleans()),
        )
        for _ in range(count)
    ]


@given(burst_hits(), st.integers(1, 60))
def test_the_burst_rule_agrees_with_checking_every_pair(hits: list[BurstHit], window: int) -> None:
    verdicts = honeypot_burst(hits, window)
    for hit, verdict in zip(hits, verdicts, strict=True):
        near = hit.client is not None and any(
            other.honeypot and other.client == hit.client and abs(other.at - hit.at) <= window
            for other in hits
        )
        assert (verdict is not None) == (hit.honeypot or near)


@given(burst_hits(), st.integers(1, 60), st.randoms())
def test_the_burst_rule_does_not_depend_on_the_order_hits_arrive_in(
    hits: list[BurstHit], window: int, rng: Any
) -> None:
    order = list(range(len(hits)))
    rng.shuffle(order)
    shuffled = honeypot_burst([hits[i] for i in order], window)
    original = honeypot_burst(hits, window)
    assert [original[i] for i in order] == shuffled


# --- the client key -----------------------------------------------------------------------------


def test_the_client_key_is_keyed_per_message_and_ignores_how_the_address_is_written() -> None:
    key = client_key(SECRET, "d1#r1", "2001:db8::1")
    assert key is not None and re.fullmatch(r"[0-9a-f]{16}", key)
    assert client_key(SECRET, "d1#r1", "2001:0db8:0000::0001") == key
    assert client_key(SECRET, "d1#r1", "::ffff:192.0.2.1") == client_key(SECRET, "d1#r1", "192.0.2.1")
    assert client_key(SECRET, "d1#r2", "2001:db8::1") != key  # another message: unlinkable
    assert client_key(b"another-secret-0123456789abcdef!", "d1#r1", "2001:db8::1") != key
    assert client_key(SECRET, "d1#r1", "not an address") is None
    assert client_key(SECRET, "d1#r1", None) is None


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_two_addresses_on_one_message_get_two_keys(a: int, b: int) -> None:
    assume(a != b)
    first = client_key(SECRET, "d1#r1", str(ipaddress.IPv4Address(a)))
    assert first != client_key(SECRET, "d1#r1", str(ipaddress.IPv4Address(b)))
    assert str(ipaddress.IPv4Address(a)) not in str(first)


# --- the data file ------------------------------------------------------------------------------


def test_the_data_file_is_small_sourced_and_valid() -> None:
    document = json.loads(machine.DATA_FILE.read_text())
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", document["updated"])
    assert 0 < len(document["ranges"]) <= 300
    assert 0 < len(document["user_agents"]) <= 200
    for entry in document["ranges"]:
        assert entry["kind"] in machine.MACHINE_KINDS
        assert entry["source"].startswith("https://")
        network = ipaddress.ip_network(entry["cidr"], strict=True)
        assert parse_cidr(entry["cidr"]) == (
            network.version,
            int(network.network_address),
            int(network.broadcast_address),
        )
    for entry in document["user_agents"]:
        assert entry["kind"] in machine.MACHINE_KINDS
        assert entry["source"]
        assert entry["pattern"] == entry["pattern"].lower()


def test_no_built_in_pattern_is_found_in_a_persons_user_agent() -> None:
    for person in (*machine_settings._PERSON_AGENTS, OUTLOOK, CHROME, IOS_SAFARI, GOOGLE_PROXY, YAHOO_PROXY):
        assert default_detector().match_user_agent(person) == (None, None), person


def test_the_built_in_view_has_the_contracts_shape() -> None:
    view = machine_settings.builtin_view()
    assert set(view) == {"ranges", "user_agents", "updated"}
    assert set(view["ranges"][0]) == {"cidr", "kind", "source"}
    assert set(view["user_agents"][0]) == {"pattern", "kind"}
    assert {"cidr": "17.0.0.0/8", "kind": "apple_mpp", "source": view["ranges"][0]["source"]} in view[
        "ranges"
    ]


def test_address_key_reads_both_families() -> None:
    assert address_key("192.0.2.1") == (4, 0xC0000201)
    assert address_key("::ffff:192.0.2.1") == (4, 0xC0000201)
    assert address_key("2001:db8::1") == (6, 0x20010DB8 << 96 | 1)
    assert address_key("") is None
    assert APPLE_MPP_USER_AGENT == "Mozilla/5.0"
