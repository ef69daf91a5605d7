"""Which addresses a webhook may be sent to: public unicast only (loopback too, locally), whatever
form the address takes."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.shared.egress import EgressPolicy, RefusedUrl, refusal, resolve

STRICT, LOCAL = EgressPolicy(), EgressPolicy(allow_http=True)


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",  # carrier-grade NAT
        "127.0.0.1",
        "0.0.0.0",
        "0.1.2.3",
        "169.254.169.254",
        "169.254.1.1",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:0a00:0001::1",  # 6to4 of 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    ],
)
def test_a_non_public_address_is_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), STRICT) is not None


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.216.34"]
)
def test_a_public_address_may_be_called(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), STRICT) is None


def test_the_local_policy_allows_loopback_only() -> None:
    assert refusal(ipaddress.ip_address("127.0.0.1"), LOCAL) is None
    assert refusal(ipaddress.ip_address("::1"), LOCAL) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), LOCAL) is None
    for address in ("10.0.0.1", "169.254.169.254", "fd00:ec2::254", "192.168.0.1"):
        assert refusal(ipaddress.ip_address(address), LOCAL) is not None


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_is_judged_the_same_in_any_ipv6_form(address: ipaddress.IPv4Address) -> None:
    verdict = refusal(address, STRICT) is None
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address))
    assert (refusal(mapped, STRICT) is None) == verdict
    assert (refusal(nat64, STRICT) is None) == verdict


def test_a_host_is_refused_if_any_of_its_addresses_is_private() -> None:
    with pytest.raises(RefusedUrl, match=r"10\.0\.0\.9"):
        resolve("https://hooks.example.com/", STRICT, lambda host, port: ["93.184.216.34", "10.0.0.9"])
    target = resolve("https://hooks.example.com:8443/in?a=1", STRICT, lambda host, port: ["93.184.216.34"])
    assert (target.address, target.port, target.path) == ("93.184.216.34", 8443, "/in?a=1")
