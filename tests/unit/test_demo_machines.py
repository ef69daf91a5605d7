"""The demo's machines (local/demo.py): MPP prefetches, a gateway burst with the honeypot, a bot; and
the honeypot anchor of a rendered message found apart from the delivery's links."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from functions.shared.machine import default_detector
from local.demo import (
    BOT_ADDRESS,
    GATEWAY_ADDRESS,
    TrackedLink,
    TrackedMessage,
    WrittenLink,
    person_address,
    plan_machines,
    tracked_message,
)

SENT_AT = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


def _messages(count: int) -> list[TrackedMessage]:
    return [
        TrackedMessage(
            f"r{n:04d}",
            (
                TrackedLink("click", "https://shop.example/", f"/r/c{n}"),
                TrackedLink("opt_out", "https://u", f"/r/u{n}"),
            ),
            f"/o/p{n}",
            f"/r/h{n}",
        )
        for n in range(count)
    ]


def test_machines_read_at_delivery_and_the_detector_names_each() -> None:
    # Given 200 delivered messages
    timed = plan_machines(random.Random(3), _messages(200), SENT_AT)
    detector = default_detector()
    mpp = [t for t in timed if t.visit.user_agent == "Mozilla/5.0"]
    gateway = [t for t in timed if t.visit.address == GATEWAY_ADDRESS]
    bot = [t for t in timed if t.visit.address == BOT_ADDRESS]
    # Then there are prefetches, bursts and polls, and nothing else
    assert mpp and gateway and len(bot) == 5
    assert len(mpp) + len(gateway) + len(bot) == len(timed)
    # And MPP loads the pixel within a minute of delivery from Apple's network: apple_mpp
    for t in mpp:
        assert t.at - SENT_AT < timedelta(minutes=1)
        assert t.visit.address.startswith("17.58.")
        assert detector.classify("open", t.visit.address, t.visit.user_agent)[0] == "apple_mpp"
    # And a gateway follows every link, the opt-out and the honeypot included, within seconds
    for t in gateway:
        kinds = [kind for kind, _ in t.visit.hits]
        assert kinds.count("honeypot") == 1 and kinds.count("click") == 2
        assert t.visit.seconds_between_hits * len(t.visit.hits) < 5
        assert detector.classify("click", t.visit.address, t.visit.user_agent)[0] == "scanner"
    # And the bot is a bot by its User-Agent
    assert {detector.classify("click", t.visit.address, t.visit.user_agent) for t in bot} == {
        ("bot", "User-Agent python-requests")
    }


def test_people_get_a_stable_address_of_their_own_that_is_no_machine() -> None:
    assert person_address("r0001") == person_address("r0001") != person_address("r0001", forwarded=True)
    assert default_detector().classify("open", person_address("r0001"), "Mozilla/5.0") == (None, None)


def test_the_honeypot_anchor_is_told_apart_from_the_delivery_links() -> None:
    written = [WrittenLink("https://shop.example/", "click")]
    rendered = (
        '<a href="http://t/r/AAA">Shop</a>'
        '<a href="http://t/r/HHH" aria-hidden="true" tabindex="-1" style="display:none"></a>'
        '<img src="http://t/o/OOO">'
    )
    message = tracked_message("r1", written, rendered)
    assert [link.href for link in message.links] == ["http://t/r/AAA"]
    assert (message.honeypot, message.pixel) == ("http://t/r/HHH", "http://t/o/OOO")


def test_serve_takes_trust_forwarded_for_into_the_functions_environment() -> None:
    from local.cli import _parser
    from local.stack import configure_environment

    assert _parser().parse_args(["serve", "--trust-forwarded-for"]).trust_forwarded_for is True
    assert _parser().parse_args(["serve"]).trust_forwarded_for is False
    environ: dict[str, str] = {}
    configure_environment(
        environ,
        aws_endpoint="http://127.0.0.1:1",
        tracking_base_url="http://t",
        schedule="rate(1 day)",
        trust_forwarded_for=True,
    )
    assert environ["MSGTRACK_TRUST_FORWARDED_FOR"] == "true"
