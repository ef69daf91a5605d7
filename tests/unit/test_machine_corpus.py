"""Machine detection over the labelled corpus (tests/fixtures/machine_corpus.json): what it catches,
and that it marks no person as a machine."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from functions.shared.machine import (
    MACHINE_KINDS,
    BurstHit,
    Verdict,
    client_key,
    default_detector,
    honeypot_burst,
    with_burst,
)

CORPUS = json.loads((Path(__file__).parents[1] / "fixtures" / "machine_corpus.json").read_text())
SECRET = b"corpus-client-key-0123456789abcdef"


def _verdicts(sequence: dict[str, Any]) -> list[Verdict]:
    """What the redirect says of each hit, then what the workflow's honeypot rule adds over the message."""
    found = default_detector()
    hits = sequence["hits"]
    own = [found.classify(hit["kind"], hit["ip"], hit["user_agent"]) for hit in hits]
    burst = honeypot_burst(
        [
            BurstHit(hit["t"], client_key(SECRET, sequence["name"], hit["ip"]), hit.get("link") == "honeypot")
            for hit in hits
        ],
        CORPUS["burst_seconds"],
    )
    return with_burst(own, burst)


def test_the_corpus_holds_every_kind_of_traffic_the_issue_names() -> None:
    names = {sequence["name"] for sequence in CORPUS["sequences"]}
    for expected in (
        "outlook_desktop_open_then_click",
        "apple_mail_without_mpp",
        "ios_gmail_app",
        "gmail_web_image_proxy",
        "yahoo_mail_proxy",
        "forward_to_colleague",
        "slow_reader",
        "mpp_prefetch_ipv4_relay",
        "safe_links_detonation_burst",
        "mimecast_url_protect",
        "proofpoint_url_defense",
        "barracuda_link_protection",
        "http_libraries",
        "unknown_gateway_late_honeypot",
    ):
        assert expected in names
    labels = Counter(hit["label"] for sequence in CORPUS["sequences"] for hit in sequence["hits"])
    assert labels[None] >= 20 and all(labels[kind] >= 8 for kind in MACHINE_KINDS)


def test_no_person_in_the_corpus_is_marked_a_machine() -> None:
    flagged = [
        (sequence["name"], index, verdict)
        for sequence in CORPUS["sequences"]
        for index, (hit, verdict) in enumerate(zip(sequence["hits"], _verdicts(sequence), strict=True))
        if hit["label"] is None and verdict[0] is not None
    ]
    assert flagged == []


def test_at_least_95_percent_of_each_kind_of_machine_hit_is_caught_as_that_kind() -> None:
    seen: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    for sequence in CORPUS["sequences"]:
        for hit, (machine, reason) in zip(sequence["hits"], _verdicts(sequence), strict=True):
            if hit["label"] is None:
                continue
            seen[hit["label"]] += 1
            if machine == hit["label"]:
                caught[hit["label"]] += 1
                assert reason
    for kind in MACHINE_KINDS:
        assert caught[kind] / seen[kind] >= 0.95, (kind, caught[kind], seen[kind])


def test_without_the_honeypot_rule_the_unpublished_gateways_go_unseen() -> None:
    # The burst rule is what catches a gateway on an unlisted network: the corpus would show it
    found = default_detector()
    for name in ("safe_links_detonation_burst", "unknown_gateway_late_honeypot"):
        sequence = next(s for s in CORPUS["sequences"] if s["name"] == name)
        first = sequence["hits"][0]
        assert found.classify(first["kind"], first["ip"], first["user_agent"]) == (None, None)
        assert _verdicts(sequence)[0][0] == "scanner"
