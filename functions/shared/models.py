"""PynamoDB models: the shape of every item, keyed by the specs in ``tables.py``.

Several item kinds share a table (single-table style within each concern); each kind has its own
model and its own sort-key prefix. Times are ISO 8601 UTC strings with a ``Z`` (``timeutil.iso``),
which sort as text.
"""

from __future__ import annotations

import zlib
from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model

from functions.shared import tables
from functions.shared.tables import TableSpec


def _meta(spec: TableSpec) -> Any:  # Any: PynamoDB types Meta as a protocol
    class Meta:
        table_name = spec.table_name
        billing_mode = "PAY_PER_REQUEST"

    return Meta


class _Model(Model):
    """Base: reads the table name when first used, so tests and the local stack can set it."""

    spec: TableSpec

    @classmethod
    def refresh_table_name(cls) -> None:
        cls.Meta.table_name = cls.spec.table_name
        cls._connection = None


# --- deliveries table -------------------------------------------------------------------------

DELIVERY_SK = "delivery"
SENDS_SK = "sends"
MESSAGE_PREFIX = "msg#"


class ByCreated(GlobalSecondaryIndex["DeliveryModel"]):
    class Meta:
        index_name = tables.DELIVERIES.indexes[0].name
        projection = IncludeProjection(list(tables.DELIVERIES.indexes[0].include or ()))

    kind = UnicodeAttribute(hash_key=True)
    created = UnicodeAttribute(range_key=True)


class DeliveryModel(_Model):
    spec = tables.DELIVERIES
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default=DELIVERY_SK)
    kind = UnicodeAttribute(default="delivery")
    created = UnicodeAttribute()  # "<created_at>#<delivery_id>": the listing index's sort key
    created_at = UnicodeAttribute()
    label = UnicodeAttribute()
    html = UnicodeAttribute()
    text = UnicodeAttribute(null=True)
    track_opens = BooleanAttribute(default=True)
    track_clicks = BooleanAttribute(default=True)
    exclude_url_patterns = ListAttribute[Any](of=UnicodeAttribute, default=list)
    url_count = NumberAttribute(default=0)  # shown by the listing, which reads the index only
    # Set when the delivery is deleted; ``kind`` is removed then, which takes it off the listing index.
    deleted_at = UnicodeAttribute(null=True)
    url_parameters = MapAttribute[str, Any](null=True)  # appended to every tracked target at registration

    by_created = ByCreated()


class MessageModel(_Model):
    """One per (delivery, recipient) rendered for real: what ``sent`` and ``delivered`` count."""

    spec = tables.DELIVERIES
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)  # "msg#<recipient_id>"
    recipient_id = UnicodeAttribute()
    email_domain = UnicodeAttribute(null=True)
    failed = BooleanAttribute(default=False)
    rendered_at = UnicodeAttribute()


EMAIL_PREFIX = "#email#"  # + recipient id: the partition of that recipient's rendered email addresses


class RecipientEmailModel(_Model):
    """The email address a non-proof message was rendered for, kept for the opt-out feed alone
    (``GET /api/opt-outs``). One partition per recipient, so an erasure finds them all with one query."""

    spec = tables.DELIVERIES
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True)  # EMAIL_PREFIX + recipient id
    sk = UnicodeAttribute(range_key=True)  # the delivery id
    email = UnicodeAttribute()
    rendered_at = UnicodeAttribute()


class SendCountsModel(_Model):
    """Messages sent and failed per delivery, kept exact by conditional writes (API function)."""

    spec = tables.DELIVERIES
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default=SENDS_SK)
    sent = NumberAttribute(default=0)
    failed = NumberAttribute(default=0)
    domains = MapAttribute[str, Any](default=dict)  # email domain -> messages sent (limits.MAX_SENT_DOMAINS)
    other_domains = NumberAttribute(default=0)  # messages sent to a domain beyond those ``domains`` names


SETTINGS_PK = "#settings"  # no delivery id starts with "#"; the item has no ``kind``, so no listing shows it
URL_TRACKING_SK = "url-tracking"
MACHINE_DETECTION_SK = "machine-detection"  # the redirect reads this item with boto3 (redirect/store.py)


class UrlTrackingSettingsModel(_Model):
    """Account-wide URL tracking rules, applied when a delivery is registered (one item)."""

    spec = tables.DELIVERIES
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True, default=SETTINGS_PK)
    sk = UnicodeAttribute(range_key=True, default=URL_TRACKING_SK)
    never_track = ListAttribute[Any](of=UnicodeAttribute, default=list)
    always_track = ListAttribute[Any](of=UnicodeAttribute, default=list)
    updated_at = UnicodeAttribute(null=True)


class MachineDetectionSettingsModel(_Model):
    """The operator's machine-detection settings (one item): ``document`` is the validated settings
    as JSON (``api/machine_detection.stored_document``), so the redirect reads them without PynamoDB."""

    spec = tables.DELIVERIES
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True, default=SETTINGS_PK)
    sk = UnicodeAttribute(range_key=True, default=MACHINE_DETECTION_SK)
    document = UnicodeAttribute()
    updated_at = UnicodeAttribute(null=True)


# --- tracked URLs table -----------------------------------------------------------------------


class TrackedUrlModel(_Model):
    spec = tables.TRACKED_URLS
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True)
    url_id = UnicodeAttribute(range_key=True)
    url = UnicodeAttribute()  # the target, possibly with {{ field }} placeholders in path or query
    label = UnicodeAttribute()
    category = UnicodeAttribute()  # click, opt_out, mirror
    tracked = BooleanAttribute(default=True)
    fields = ListAttribute[Any](of=UnicodeAttribute, default=list)  # placeholders the target uses
    # Set when its delivery is deleted: the redirect answers a neutral page, the workflow counts nothing.
    deleted_at = UnicodeAttribute(null=True)


SITES_PK = "#sites"  # no delivery id starts with "#": the workflow never reads sites as tracked URLs


class SiteModel(_Model):
    """A web-tracking site: its tag's signed token names it; only its domains may send events.

    Kept in the tracked-urls table because the redirect function, which answers the tag, may read
    that table and no other.
    """

    spec = tables.TRACKED_URLS
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True, default=SITES_PK)
    url_id = UnicodeAttribute(range_key=True)  # the site id
    name = UnicodeAttribute()
    domains = ListAttribute[Any](of=UnicodeAttribute, default=list)  # lower case; subdomains match too
    created_at = UnicodeAttribute()
    created_by = UnicodeAttribute(null=True)  # the API token's name


# --- raw events table -------------------------------------------------------------------------


class RawEventModel(_Model):
    """One hit on /r or /o, written by the redirect function (through ``raw_events.py``)."""

    spec = tables.RAW_EVENTS
    Meta = _meta(spec)

    shard = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)  # "<at>#<event_id>"
    event_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # click, open, page, transaction (the last two: the web-tracking tag)
    delivery_id = UnicodeAttribute()  # for page and transaction: attributed from the person cookie
    recipient_id = UnicodeAttribute()
    url_id = UnicodeAttribute(null=True)  # clicks only
    at = UnicodeAttribute()
    user_agent = UnicodeAttribute(null=True)
    person_id = UnicodeAttribute(null=True)
    ip = UnicodeAttribute(null=True)  # truncated to /24 or /48
    proof = BooleanAttribute(default=False)
    expires_at = NumberAttribute()  # epoch seconds, DynamoDB TTL
    # The web-tracking tag (kind page or transaction) only:
    site_id = UnicodeAttribute(null=True)
    via_url_id = UnicodeAttribute(null=True)  # the tracked URL of the click the visit is attributed to
    page_url = UnicodeAttribute(null=True)  # the page the tag ran on (at most MAX_PAGE_URL_BYTES)
    amount = UnicodeAttribute(null=True)  # transactions: a decimal string, e.g. "12.50"
    currency = UnicodeAttribute(null=True)  # transactions: ISO 4217, upper case
    # Machine traffic (``machine.py``): apple_mpp, scanner or bot, None for a person; the signal that
    # decided; a per-message keyed hash of the client address (the honeypot burst); a honeypot-link hit.
    machine = UnicodeAttribute(null=True)
    machine_reason = UnicodeAttribute(null=True)
    client_key = UnicodeAttribute(null=True)
    honeypot = BooleanAttribute(default=False)
    # A honeypot hit: the burst window (seconds) in force when it was recorded, so a settings change
    # applies to hits recorded after it; None means machine.DEFAULT_BURST_SECONDS.
    burst_seconds = NumberAttribute(null=True)
    # raw_events.ONE_CLICK for a one-click unsubscribe (a click without a URL, logged as an opt_out)
    source = UnicodeAttribute(null=True)


# --- tracking logs table ----------------------------------------------------------------------


class OptOutFeed(GlobalSecondaryIndex["TrackingLogModel"]):
    class Meta:
        index_name = tables.OPT_OUT_FEED_INDEX.name
        projection = IncludeProjection(list(tables.OPT_OUT_FEED_INDEX.include or ()))

    opt_out_feed = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class TrackingLogModel(_Model):
    spec = tables.TRACKING_LOGS
    Meta = _meta(spec)

    # tables.tracking_log_partition(delivery_id, recipient_id): filled in from those two when not given
    partition = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)  # "<at>#<event_id>"
    delivery_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    recipient_id = UnicodeAttribute()
    type = UnicodeAttribute()  # open, click, opt_out, mirror, page, transaction
    url_id = UnicodeAttribute(null=True)
    url = UnicodeAttribute(null=True)  # page and transaction: the page the web-tracking tag ran on
    label = UnicodeAttribute(null=True)
    at = UnicodeAttribute()
    browser = UnicodeAttribute(null=True)
    os = UnicodeAttribute(null=True)
    device = UnicodeAttribute(null=True)
    person_id = UnicodeAttribute(null=True)
    proof = BooleanAttribute(default=False)
    counted = BooleanAttribute(default=True)  # false: proof or untracked URL, excluded from indicators
    expires_at = NumberAttribute(null=True)
    amount = UnicodeAttribute(null=True)  # transactions only: a decimal string, e.g. "12.50"
    currency = UnicodeAttribute(null=True)  # transactions only: ISO 4217, upper case
    machine = UnicodeAttribute(null=True)  # apple_mpp, scanner, bot; None for a person
    machine_reason = UnicodeAttribute(null=True)  # the signal that decided; None for a person
    client_key = UnicodeAttribute(null=True)  # see RawEventModel: what the honeypot burst compares
    # opt_out_feed.FEED_KEY on a person's opt-out (the opt-out feed's sparse index), else absent
    opt_out_feed = UnicodeAttribute(null=True)

    opt_out_feed_index = OptOutFeed()

    def __init__(
        self, hash_key: Any = None, range_key: Any = None, _user_instantiated: bool = True, **attributes: Any
    ):
        # The partition is a fact of the log (its delivery and recipient), never a writer's choice.
        if hash_key is None and "partition" not in attributes and _user_instantiated:
            delivery_id, recipient_id = attributes.get("delivery_id"), attributes.get("recipient_id")
            if delivery_id is not None and recipient_id is not None:
                attributes["partition"] = tables.tracking_log_partition(delivery_id, recipient_id)
        super().__init__(hash_key, range_key, _user_instantiated, **attributes)


# --- indicators table (written only by the tracking workflow) ---------------------------------

STATS_SK = "stats"
URL_STATS_PREFIX = "url#"
HOUR_PREFIX = "hour#"
RECIPIENT_STATE_PREFIX = "r#"
RECIPIENT_LOG_PAGE_PREFIX = "l#"  # a page of a recipient's log keys (``RecipientLogPageModel``)
PERSON_STATE_PREFIX = "p#"
CLICK_STREAMS_SK = "streams"
HUMAN_CLICK_STREAMS_SK = "streams#human"  # the click streams of human clicks only (no pages)
STREAM_SEPARATOR = ">"  # between the url ids of a click-streams path or transition key
STREAM_CUT_SHORT = "…"  # the last step of a click-streams path key that was cut short
# After the url id of a click-streams page key; no url id holds it, so a key splits at the first.
PAGE_SEPARATOR = "\u241f"


class DeliveryStatsModel(_Model):
    spec = tables.INDICATORS
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default=STATS_SK)
    opens = NumberAttribute(default=0)
    total_opens = NumberAttribute(default=0)
    clicks = NumberAttribute(default=0)
    person_clicks = NumberAttribute(default=0)
    total_clicks = NumberAttribute(default=0)
    opt_outs = NumberAttribute(default=0)
    mirror_page_views = NumberAttribute(default=0)
    page_views = NumberAttribute(default=0)  # web-tracking tag: page events
    transactions = NumberAttribute(default=0)  # web-tracking tag: transaction events
    transaction_amount = MapAttribute[str, Any](default=dict)  # currency -> exact decimal sum, a string
    # {"browser"|"os"|"device": {name: {"opens": events, "clicks": events}},
    #  "domain": {name: {"opens": recipients, "clicks": recipients}}}
    breakdowns = MapAttribute[str, Any](default=dict)
    # Bounded (``limits.py``): each breakdown names at most MAX_BREAKDOWN_NAMES names, those with the
    # most events; the others' counts are added up here, {"browser": {"opens": n, "clicks": n}, ...}.
    other_breakdowns = MapAttribute[str, Any](default=dict)
    # Transactions in a currency beyond the first MAX_CURRENCIES: counted in ``transactions``, their
    # amounts (in currencies nobody can add up together) left out of ``transaction_amount``.
    other_currency_transactions = NumberAttribute(default=0)
    # Human traffic (hits no machine made): the counters of the top level, {"opens": n, ...}, and the
    # breakdowns likewise (bounded the same way). Machine traffic: {"total_opens": n, "total_clicks": n,
    # "by_kind": {kind: logged hits}}. Honeypot hits count only in ``machine["by_kind"]``.
    human = MapAttribute[str, Any](default=dict)
    human_breakdowns = MapAttribute[str, Any](default=dict)
    human_other_breakdowns = MapAttribute[str, Any](default=dict)
    machine = MapAttribute[str, Any](default=dict)
    updated_at = UnicodeAttribute(null=True)


class UrlStatsModel(_Model):
    spec = tables.INDICATORS
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)  # "url#<url_id>"
    url_id = UnicodeAttribute()
    clicks = NumberAttribute(default=0)
    distinct_clicks = NumberAttribute(default=0)
    first_click = UnicodeAttribute(null=True)
    last_click = UnicodeAttribute(null=True)
    human_clicks = NumberAttribute(default=0)
    human_distinct_clicks = NumberAttribute(default=0)


class HourStatsModel(_Model):
    spec = tables.INDICATORS
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)  # "hour#<YYYY-MM-DDTHH>"
    hour = UnicodeAttribute()  # "YYYY-MM-DDTHH:00:00Z"
    opens = NumberAttribute(default=0)  # open-pixel events
    clicks = NumberAttribute(default=0)  # events on click links
    human_opens = NumberAttribute(default=0)
    human_clicks = NumberAttribute(default=0)


LOG_KEY_SEPARATOR = " "  # between the sort keys of ``RecipientStateModel.logs``


# Where a recipient's states are stored: in the recipient's own partition, one item per delivery
# (``stored_recipient_key``), so the recipient Tracking tab and erasure find them with one Query and
# no index (an index entry would cost a write unit more per item), and a campaign's states spread over
# as many partitions as it has recipients. No delivery id starts with "#".
RECIPIENT_PARTITION_PREFIX = "#r#"


def stored_recipient_key(delivery_id: str, recipient_id: str) -> tuple[str, str]:
    """The stored key of a recipient's state in a delivery: (recipient's partition, "r#<delivery>")."""
    return (RECIPIENT_PARTITION_PREFIX + recipient_id, RECIPIENT_STATE_PREFIX + delivery_id)


class RecipientStateModel(_Model):
    """What one recipient has done with one delivery: the memory behind every distinct count, and
    where the recipient's tracking logs of the delivery are (the recipient Tracking tab, erasure).

    In memory its key is the delivery's, (delivery id, "r#<recipient>"), like every indicator item;
    stored, it is ``stored_recipient_key`` (``as_stored`` and ``as_read`` turn one into the other).
    """

    spec = tables.INDICATORS
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)  # "r#<recipient_id>"
    recipient_id = UnicodeAttribute()
    opened = BooleanAttribute(default=False)
    clicked = BooleanAttribute(default=False)
    opted_out = BooleanAttribute(default=False)
    urls = UnicodeSetAttribute(null=True)  # url ids of click links clicked
    path = ListAttribute[Any](of=UnicodeAttribute, null=True)  # click stream: "<at>|<url_id>" in time order
    email_domain = UnicodeAttribute(null=True)
    # Counts behind the human distinct counts, so that a hit found to be a machine's later (the
    # honeypot burst) is taken off exactly: human hits, human click-link events, human opt-out events,
    # and human events per URL as "<url_id>:<n>,...". Plain numbers and strings: a run encodes every
    # recipient state it changes into its pending batch, and maps and lists cost far more to encode.
    human_hits = NumberAttribute(null=True)
    human_clicks = NumberAttribute(null=True)
    human_opt_outs = NumberAttribute(null=True)
    human_urls = UnicodeAttribute(null=True)
    # The honeypot burst (``batch._honeypot``): the recipient's latest hits with a client key,
    # "<log sk>|<client_key>" separated by spaces in log order (at most batch.MAX_RECENT_HITS), and its
    # honeypot hits, [at, client_key, burst_seconds] (at most batch.MAX_HONEYPOT_HITS).
    recent_hits = UnicodeAttribute(null=True)
    human_path = ListAttribute[Any](of=UnicodeAttribute, null=True)  # ``path`` of human clicks only
    honeypot_hits = ListAttribute[Any](null=True)
    # The sort keys of the tracking logs of this recipient and delivery (proofs, machine hits and web
    # visits included), in order, separated by LOG_KEY_SEPARATOR; each log's partition key is
    # ``tables.tracking_log_partition(delivery_id, recipient_id)``. At most limits.MAX_RECIPIENT_LOGS:
    # beyond, they spill to pages (``RecipientLogPageModel``, ``recipient_log_pages``): ``log_pages``
    # counts them, ``logs_sealed`` is the greatest key any holds, ``logs_overlap`` says a page holds
    # keys below an older page's (late events), so that readers read every page of the delivery.
    logs = UnicodeAttribute(null=True)
    log_pages = NumberAttribute(null=True)
    logs_sealed = UnicodeAttribute(null=True)
    logs_overlap = BooleanAttribute(null=True)
    # Set only by the migration (``migrate.py``) on states whose logs it copied from the old table and
    # which therefore list none: readers query the logs' partition for the recipient instead.
    logs_overflow = BooleanAttribute(null=True)

    def as_stored(self) -> RecipientStateModel:
        """This state as stored: the same attributes under ``stored_recipient_key``."""
        partition, sk = stored_recipient_key(str(self.delivery_id), str(self.recipient_id))
        return RecipientStateModel.from_raw_data(
            {**self.serialize(), "delivery_id": {"S": partition}, "sk": {"S": sk}}
        )

    def as_read(self) -> RecipientStateModel:
        """A stored state with its key in memory: (delivery id, "r#<recipient>")."""
        delivery_id = str(self.sk).removeprefix(RECIPIENT_STATE_PREFIX)
        return RecipientStateModel.from_raw_data(
            {
                **self.serialize(),
                "delivery_id": {"S": delivery_id},
                "sk": {"S": RECIPIENT_STATE_PREFIX + str(self.recipient_id)},
            }
        )


def stored_log_page_key(delivery_id: str, recipient_id: str, first: str, number: int) -> tuple[str, str]:
    """The stored key of a page of a recipient's log keys in a delivery: (recipient's partition,
    "l#<delivery>#<first key>#<number>"). Pages of a delivery sort by their first key, so a Query
    finds the page a position falls in; the number keeps two pages from ever sharing a key."""
    return (
        RECIPIENT_PARTITION_PREFIX + recipient_id,
        f"{RECIPIENT_LOG_PAGE_PREFIX}{delivery_id}#{first}#{number}",
    )


class RecipientLogPageModel(_Model):
    """Sort keys of a recipient's tracking logs in a delivery that their state no longer lists
    (``recipient_log_pages``): written once, when the state's list spills, and never changed.

    In memory its key is (delivery id, "l#<recipient>#<number>"), which only names it; stored, it is
    ``stored_log_page_key``, in the recipient's partition beside their states.
    """

    spec = tables.INDICATORS
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    recipient_id = UnicodeAttribute()
    number = NumberAttribute()  # 1, 2, ... in the order the state spilled them
    logs = UnicodeAttribute()  # sort keys in order, separated by LOG_KEY_SEPARATOR

    def log_keys(self) -> list[str]:
        return str(self.logs).split(LOG_KEY_SEPARATOR)

    def as_stored(self) -> RecipientLogPageModel:
        partition, sk = stored_log_page_key(
            str(self.delivery_id), str(self.recipient_id), self.log_keys()[0], int(self.number)
        )
        return RecipientLogPageModel.from_raw_data(
            {**self.serialize(), "delivery_id": {"S": partition}, "sk": {"S": sk}}
        )

    def as_read(self) -> RecipientLogPageModel:
        delivery_id = str(self.sk).removeprefix(RECIPIENT_LOG_PAGE_PREFIX).split("#", 1)[0]
        return RecipientLogPageModel.from_raw_data(
            {
                **self.serialize(),
                "delivery_id": {"S": delivery_id},
                "sk": {"S": log_page_sk(str(self.recipient_id), int(self.number))},
            }
        )


def log_page_sk(recipient_id: str, number: int) -> str:
    """The sort key in memory of a recipient's log page ``number`` in a delivery."""
    return f"{RECIPIENT_LOG_PAGE_PREFIX}{recipient_id}#{number}"


# Where a person's state is stored: in one of PERSON_SPREAD partitions of its delivery, picked by the
# person id (``stored_person_key``). A campaign's persons are about a quarter of its events and each run
# writes every person it touches: under the delivery's own key they met DynamoDB's 1,000 write units a
# second per partition key at about 4,000 events a second. 16 keys take 16,000 person writes a second,
# some 64,000 events a second, above the 20 million events an hour (5,600 a second) of issue #13 with
# room for bursts; the delivery's report reads no person item, so the spread costs no read.
PERSON_SPREAD = 16
PERSON_PARTITION_SEPARATOR = "#p"  # no delivery id holds "#" (``ids.delivery_id``)


def stored_person_key(delivery_id: str, person_id: str) -> tuple[str, str]:
    """The stored key of a person's state in a delivery: ("<delivery>#p<n>", "p#<person>")."""
    spread = zlib.crc32(person_id.encode()) % PERSON_SPREAD
    return (f"{delivery_id}{PERSON_PARTITION_SEPARATOR}{spread}", PERSON_STATE_PREFIX + person_id)


class PersonStateModel(_Model):
    """Whether a person (a browser's cookie) clicked a delivery's click links, behind ``person_clicks``.

    In memory its key is the delivery's, (delivery id, "p#<person>"), like every indicator item;
    stored, it is ``stored_person_key`` (``as_stored`` and ``as_read`` turn one into the other).
    """

    spec = tables.INDICATORS
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)  # "p#<person_id>"
    clicked = BooleanAttribute(default=True)
    human_clicks = NumberAttribute(default=0)  # click events of this person no machine made

    def as_stored(self) -> PersonStateModel:
        """This state as stored: the same attributes under ``stored_person_key``."""
        person_id = str(self.sk).removeprefix(PERSON_STATE_PREFIX)
        partition, sk = stored_person_key(str(self.delivery_id), person_id)
        return PersonStateModel.from_raw_data(
            {**self.serialize(), "delivery_id": {"S": partition}, "sk": {"S": sk}}
        )

    def as_read(self) -> PersonStateModel:
        """A stored state with its key in memory: (delivery id, "p#<person>")."""
        delivery_id = str(self.delivery_id).rpartition(PERSON_PARTITION_SEPARATOR)[0]
        return PersonStateModel.from_raw_data({**self.serialize(), "delivery_id": {"S": delivery_id}})


class ClickStreamsModel(_Model):
    """The order in which a delivery's recipients clicked its click links, pre-aggregated.

    Kept from each recipient's ``RecipientStateModel.path`` by the tracking workflow: a path counts a
    recipient under their sequence of links (a link clicked again straight away counts once), a
    transition counts every move from one link to the next. Bounded in size (``shared/limits.py``):
    once ``MAX_STREAM_ENTRIES`` distinct paths (or transitions) are known, a new one is counted in
    ``other_paths`` (``other_transitions``) instead, and known ones stay known (at zero) while anyone
    is counted there, so a recipient is always taken off exactly where they were counted.

    ``pages`` counts the page views of the web-tracking tag after a click on each link (they are only
    ever added), each page named by its first ``MAX_STREAM_PAGE_BYTES``: beyond ``MAX_STREAM_PAGES``
    distinct (link, page) keys a new one counts in ``other_pages``.
    """

    spec = tables.INDICATORS
    Meta = _meta(spec)

    delivery_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default=CLICK_STREAMS_SK)
    paths = MapAttribute[str, Any](default=dict)  # "1>4>2": recipients (STREAM_SEPARATOR, STREAM_CUT_SHORT)
    other_paths = NumberAttribute(default=0)
    transitions = MapAttribute[str, Any](default=dict)  # "<from_url_id>><to_url_id>": moves
    other_transitions = NumberAttribute(default=0)
    pages = MapAttribute[str, Any](default=dict)  # "<via_url_id>\u241f<page_url>" -> page views
    other_pages = NumberAttribute(default=0)


# --- workflow table ---------------------------------------------------------------------------

RUNS_PK = "runs"
STATE_PK = "state"
STATE_SK = "tracking"


class RunModel(_Model):
    spec = tables.WORKFLOW
    Meta = _meta(spec)

    pk = UnicodeAttribute(hash_key=True, default=RUNS_PK)
    sk = UnicodeAttribute(range_key=True)  # the run id, which sorts by start time
    status = UnicodeAttribute()  # running, succeeded, failed, skipped
    trigger = UnicodeAttribute(null=True)  # schedule, api
    started_at = UnicodeAttribute()
    finished_at = UnicodeAttribute(null=True)
    events_processed = NumberAttribute(default=0)
    errors = ListAttribute[Any](of=UnicodeAttribute, default=list)
    quarantined = NumberAttribute(default=0)  # writes DynamoDB refused for what they held (QuarantineModel)
    # One entry per worker of the run: {"shards": [...], "events_processed": n, "status": ...}
    workers = ListAttribute[Any](null=True)


class WorkflowStateModel(_Model):
    spec = tables.WORKFLOW
    Meta = _meta(spec)

    pk = UnicodeAttribute(hash_key=True, default=STATE_PK)
    sk = UnicodeAttribute(range_key=True, default=STATE_SK)
    checkpoints = MapAttribute[str, Any](default=dict)  # shard -> last consolidated raw-event sort key
    lock_owner = UnicodeAttribute(null=True)
    lock_expires = NumberAttribute(null=True)
    batch_seq = NumberAttribute(default=0)
    # Where the pending batch is (consolidate/store.py ``PendingChunks``): its chunk items' key and count
    pending_at = UnicodeAttribute(null=True)
    pending_chunks = NumberAttribute(null=True)
    pending_batch = BinaryAttribute(
        null=True, legacy_encoding=False
    )  # the whole batch, as older versions kept it


QUARANTINE_PK = "quarantine"


class QuarantineModel(_Model):
    """A write DynamoDB refused for what it held (too large, an invalid value): the tracking workflow
    kept it here and went on without it. README "Operations" says how to re-drive or discard one."""

    spec = tables.WORKFLOW
    Meta = _meta(spec)

    pk = UnicodeAttribute(hash_key=True, default=QUARANTINE_PK)
    sk = UnicodeAttribute(range_key=True)  # "<table>#<the refused item's key>": a replay rewrites it
    at = UnicodeAttribute()
    run_id = UnicodeAttribute()
    table = UnicodeAttribute()  # the refused item's table: tracking-logs, indicators or raw-events
    model = UnicodeAttribute()  # its model (ALL_MODELS), to read ``item`` back
    key = UnicodeAttribute()  # its key, JSON
    error = UnicodeAttribute()  # what DynamoDB answered
    item = BinaryAttribute(legacy_encoding=False)  # zlib JSON of its attribute values (DynamoDB form)
    item_bytes = NumberAttribute()  # its size as DynamoDB counts it
    complete = BooleanAttribute()  # False: ``item`` was cut short to fit this item
    instead = UnicodeAttribute(null=True)  # what the workflow put in its place, if anything


ERASURE_PENDING_PK = "erasures#pending"
ERASURES_PK = "erasures"


class ErasureModel(_Model):
    """A request to erase one recipient's tracking data; carried out by the tracking workflow,
    the only function allowed to delete raw events and tracking logs. Pending requests and done
    ones live under different partition keys, so finding the pending ones reads nothing else."""

    spec = tables.WORKFLOW
    Meta = _meta(spec)

    pk = UnicodeAttribute(hash_key=True, default=ERASURE_PENDING_PK)
    sk = UnicodeAttribute(range_key=True)  # the erasure id, which sorts by request time
    recipient_id = UnicodeAttribute()
    status = UnicodeAttribute(default="pending")  # pending, done
    requested_at = UnicodeAttribute()
    done_at = UnicodeAttribute(null=True)
    logs_deleted = NumberAttribute(default=0)
    raw_events_deleted = NumberAttribute(default=0)
    states_deleted = NumberAttribute(default=0)


AUDIT_PK = "audit"


class AuditModel(_Model):
    """One change made through the report API: who (the API token's name), what, when, before/after."""

    spec = tables.WORKFLOW
    Meta = _meta(spec)

    pk = UnicodeAttribute(hash_key=True, default=AUDIT_PK)
    sk = UnicodeAttribute(range_key=True)  # "<time to the microsecond>Z-<random>": sorts by time
    at = UnicodeAttribute()
    actor = UnicodeAttribute()
    action = UnicodeAttribute()
    target = UnicodeAttribute()
    before = UnicodeAttribute(null=True)  # JSON
    after = UnicodeAttribute(null=True)  # JSON


EXPORTS_PK = "exports"


class ExportModel(_Model):
    """A complete export of a delivery's tracking logs to S3: asked for by the API, written by the
    exports function in parts (S3 multipart upload), resumable from ``position`` after a cut."""

    spec = tables.WORKFLOW
    Meta = _meta(spec)

    pk = UnicodeAttribute(hash_key=True, default=EXPORTS_PK)
    sk = UnicodeAttribute(range_key=True)  # the export id
    delivery_id = UnicodeAttribute()
    format = UnicodeAttribute()  # csv, jsonl
    filters = UnicodeAttribute()  # JSON: the logs route's filters (functions/api/reports.LogRequest)
    status = UnicodeAttribute()  # running, succeeded, failed
    rows = NumberAttribute(default=0)  # logs written in the uploaded parts
    error = UnicodeAttribute(null=True)
    actor = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()  # every saved step: a running export not updated for long has died
    finished_at = UnicodeAttribute(null=True)
    object_key = UnicodeAttribute()
    upload_id = UnicodeAttribute(null=True)  # the S3 multipart upload in progress
    parts = UnicodeAttribute(default="[]")  # JSON [[part number, ETag], ...] uploaded so far
    position = UnicodeAttribute(null=True)  # JSON [delivery_id, sk] of the last log in the uploaded parts
    invocations = NumberAttribute(default=0)


WEBHOOKS_PK = "webhooks"


class WebhookModel(_Model):
    """A registered webhook (``functions/shared/webhooks.py``): where events go and how it fares.

    Its secret is not stored: it is derived from the webhook key and ``salt`` when needed."""

    spec = tables.WORKFLOW
    Meta = _meta(spec)

    pk = UnicodeAttribute(hash_key=True, default=WEBHOOKS_PK)
    sk = UnicodeAttribute(range_key=True)  # the webhook id
    url = UnicodeAttribute()
    events = ListAttribute[Any](of=UnicodeAttribute, default=list)
    description = UnicodeAttribute(null=True)
    salt = UnicodeAttribute()
    created_at = UnicodeAttribute()
    created_by = UnicodeAttribute(null=True)
    last_error = UnicodeAttribute(null=True)
    last_error_at = UnicodeAttribute(null=True)
    failing_since = UnicodeAttribute(null=True)  # the first failure since the last success
    dead_lettered = NumberAttribute(default=0)  # deliveries given up after 24 hours of failures


ALL_MODELS: tuple[type[_Model], ...] = (
    DeliveryModel,
    MessageModel,
    SendCountsModel,
    TrackedUrlModel,
    SiteModel,
    RawEventModel,
    TrackingLogModel,
    DeliveryStatsModel,
    UrlStatsModel,
    HourStatsModel,
    RecipientStateModel,
    RecipientLogPageModel,
    PersonStateModel,
    ClickStreamsModel,
    RunModel,
    WorkflowStateModel,
    ErasureModel,
    UrlTrackingSettingsModel,
    MachineDetectionSettingsModel,
    AuditModel,
    QuarantineModel,
    ExportModel,
    WebhookModel,
)


def refresh_table_names() -> None:
    """Re-read physical table names from the environment (tests and the local stack set them)."""
    for model in ALL_MODELS:
        model.refresh_table_name()
