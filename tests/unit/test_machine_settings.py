"""Machine-detection settings (``PUT /api/settings/machine-detection``): what is accepted, what is a 422."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.shared.machine import AgentRule, MachineSettings, RangeRule
from functions.shared.machine_settings import (
    MAX_RANGES,
    MAX_USER_AGENTS,
    InvalidMachineSettings,
    settings_from_item,
    settings_view,
    validate_settings,
)


def test_a_valid_document_becomes_settings() -> None:
    # Given what an operator sends
    document = {
        "ranges": [{"cidr": "192.0.2.0/24", "kind": "scanner"}, {"cidr": "2001:db8:1::/48", "kind": "bot"}],
        "user_agents": [{"pattern": "Acme-LinkCheck", "kind": "scanner"}],
        "honeypot": False,
        "burst_seconds": 45,
    }
    # When it is validated
    settings = validate_settings(document)
    # Then
    assert settings == MachineSettings(
        (RangeRule("192.0.2.0/24", "scanner"), RangeRule("2001:db8:1::/48", "bot")),
        (AgentRule("Acme-LinkCheck", "scanner"),),
        False,
        45,
    )


def test_left_out_fields_take_their_defaults_and_builtin_is_ignored() -> None:
    assert validate_settings({}) == MachineSettings((), (), True, 30)
    assert settings_from_item(None) == MachineSettings((), (), True, 30)
    # A client may PUT back what it read, read-only part included
    settings = MachineSettings((RangeRule("198.51.100.0/24", "scanner"),), (), True, 20)
    assert validate_settings(settings_view(settings)) == settings


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"ranges": [{"cidr": "192.0.2.0/33", "kind": "scanner"}]}, "prefix length is above 32"),
        ({"ranges": [{"cidr": "192.0.2.1/24", "kind": "scanner"}]}, "host bits set"),
        ({"ranges": [{"cidr": "not-a-network", "kind": "scanner"}]}, "not in CIDR notation"),
        ({"ranges": [{"cidr": "192.0.2.300/32", "kind": "scanner"}]}, "not an IP network"),
        ({"ranges": [{"cidr": "192.0.2.0", "kind": "scanner"}]}, "not in CIDR notation"),
        ({"ranges": [{"cidr": 17, "kind": "scanner"}]}, "not in CIDR notation"),
        ({"ranges": [{"cidr": "0.0.0.0/0", "kind": "scanner"}]}, "wider than /8"),
        ({"ranges": [{"cidr": "::/0", "kind": "bot"}]}, "wider than /16"),
        ({"ranges": [{"cidr": "192.0.2.0/24", "kind": "robot"}]}, "unknown kind 'robot'"),
        ({"ranges": [{"cidr": "192.0.2.0/24"}]}, "unknown kind None"),
        ({"ranges": [{"cidr": "192.0.2.0/24", "kind": "bot", "note": "x"}]}, "unknown field 'note'"),
        (
            {
                "ranges": [
                    {"cidr": "192.0.2.0/24", "kind": "bot"},
                    {"cidr": "192.0.2.0/24", "kind": "scanner"},
                ]
            },
            "listed twice",
        ),
        ({"ranges": "192.0.2.0/24"}, "ranges must be a list"),
        ({"ranges": ["192.0.2.0/24"]}, "ranges[0] must be an object"),
        ({"user_agents": [{"pattern": "bot", "kind": "bot"}]}, "4 to 200 characters"),
        ({"user_agents": [{"pattern": "x" * 201, "kind": "bot"}]}, "4 to 200 characters"),
        ({"user_agents": [{"pattern": "Mozilla", "kind": "bot"}]}, "found in ordinary browsers"),
        ({"user_agents": [{"pattern": "Chrome/", "kind": "scanner"}]}, "found in ordinary browsers"),
        ({"user_agents": [{"pattern": "GoogleImageProxy", "kind": "bot"}]}, "found in ordinary browsers"),
        ({"user_agents": [{"pattern": "acme\x00scan", "kind": "bot"}]}, "printable"),
        ({"user_agents": [{"pattern": "   ", "kind": "bot"}]}, "non-empty string"),
        ({"user_agents": [{"pattern": "acme-scan", "kind": "spider"}]}, "unknown kind 'spider'"),
        (
            {
                "user_agents": [
                    {"pattern": "Acme-Scan", "kind": "bot"},
                    {"pattern": "acme-scan", "kind": "bot"},
                ]
            },
            "listed twice",
        ),
        ({"honeypot": "yes"}, "honeypot must be true or false"),
        ({"burst_seconds": 0}, "between 1 and 300"),
        ({"burst_seconds": 86400}, "between 1 and 300"),
        ({"burst_seconds": "30"}, "whole number"),
        ({"burst_seconds": 2.5}, "whole number"),
        ({"burst_seconds": True}, "whole number"),
        ({"burst": 30}, "unknown field 'burst'"),
    ],
)
def test_a_bad_document_is_refused_with_what_is_wrong(
    document: dict[str, Any], message: str, reliability: Any
) -> None:
    with pytest.raises(InvalidMachineSettings) as refused:
        validate_settings(document)
    assert message in refused.value.message
    assert refused.value.code == "validation_error"
    reliability.record(
        "Bad input",
        "bad machine-detection settings: bad or too wide CIDR, host bits, unknown kind, short or "
        "browser-matching pattern, absurd burst window, unknown field",
        1,
        "InvalidMachineSettings (422) naming the problem",
    )


def test_more_entries_than_the_bounds_are_refused(reliability: Any) -> None:
    ranges = [{"cidr": f"10.{n // 256}.{n % 256}.0/24", "kind": "scanner"} for n in range(MAX_RANGES + 1)]
    agents = [{"pattern": f"acme-scanner-{n}", "kind": "scanner"} for n in range(MAX_USER_AGENTS + 1)]
    with pytest.raises(InvalidMachineSettings, match=f"at most {MAX_RANGES}"):
        validate_settings({"ranges": ranges})
    with pytest.raises(InvalidMachineSettings, match=f"at most {MAX_USER_AGENTS}"):
        validate_settings({"user_agents": agents})
    # At the bound, accepted
    assert len(validate_settings({"ranges": ranges[:MAX_RANGES]}).ranges) == MAX_RANGES
    reliability.record(
        "Bad input",
        "machine-detection settings above the entry bounds (501 ranges, 201 patterns)",
        2,
        "InvalidMachineSettings (422) naming the bound; nothing stored",
    )


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(InvalidMachineSettings) as refused:
        validate_settings({"ranges": [{"cidr": "x", "kind": "y"}], "burst_seconds": -1, "honeypot": 1})
    assert refused.value.message.count(";") >= 3


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["ranges", "user_agents", "honeypot", "burst_seconds", "cidr", "kind", "pattern", "x"]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


def test_any_json_document_is_either_settings_or_a_validation_error(reliability: Any) -> None:
    tried = 0

    @given(JSON_VALUES)
    def validate(document: Any) -> None:
        nonlocal tried
        tried += 1
        with contextlib.suppress(InvalidMachineSettings):
            assert isinstance(validate_settings(document), MachineSettings)

    validate()
    reliability.record(
        "Bad input",
        "generated JSON documents as machine-detection settings (hypothesis)",
        tried,
        "accepted or InvalidMachineSettings (422): never another exception",
    )
