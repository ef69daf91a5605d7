"""Every DynamoDB table msgtrack uses, declared once.

The PynamoDB models (``models.py``), the local stack (``local/aws.py``) and the CDK stack all read
these specs, so a key or index name exists in exactly one place.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Key:
    name: str
    type: str = "S"  # DynamoDB scalar type: S, N or B


@dataclass(frozen=True)
class Index:
    name: str
    hash_key: Key
    range_key: Key | None = None
    # None projects every attribute; a tuple projects the keys and those attributes only.
    include: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TableSpec:
    logical_name: str  # also the suffix of the physical name
    env_var: str  # environment variable holding the physical name
    hash_key: Key
    range_key: Key | None = None
    indexes: tuple[Index, ...] = field(default_factory=tuple)
    ttl_attribute: str | None = None
    stream: str | None = None  # DynamoDB stream view type (NEW_IMAGE...), None: no stream

    @property
    def table_name(self) -> str:
        """Physical table name: explicit variable, else ``MSGTRACK_TABLE_PREFIX`` + logical name."""
        explicit = os.environ.get(self.env_var)
        if explicit:
            return explicit
        return os.environ.get("MSGTRACK_TABLE_PREFIX", "msgtrack-") + self.logical_name

    def attribute_definitions(self) -> dict[str, str]:
        keys = [self.hash_key, self.range_key]
        for index in self.indexes:
            keys += [index.hash_key, index.range_key]
        return {k.name: k.type for k in keys if k is not None}


# A delivery (sk "delivery"), its rendered messages (sk "msg#<recipient>") and its send counters
# (sk "sends"). Only delivery items carry ``kind``, so the listing index is sparse.
DELIVERIES = TableSpec(
    logical_name="deliveries",
    env_var="MSGTRACK_DELIVERIES_TABLE",
    hash_key=Key("delivery_id"),
    range_key=Key("sk"),
    # The listing never reads a delivery's content (up to 350 KB): project only what it shows.
    indexes=(
        Index(
            "by_created",
            Key("kind"),
            Key("created"),
            include=("label", "track_opens", "track_clicks", "created_at", "url_count"),
        ),
    ),
)

# Tracked URLs on their own so the redirect function can be granted read access to them alone.
TRACKED_URLS = TableSpec(
    logical_name="tracked-urls",
    env_var="MSGTRACK_TRACKED_URLS_TABLE",
    hash_key=Key("delivery_id"),
    range_key=Key("url_id"),
)

# One item per hit. The hash key is a shard of the recipient (``raw_events.shard_of``) so that a
# campaign burst spreads over many partitions and each recipient's hits stay in one; the sort key starts with the time so the tracking workflow reads
# each shard from its checkpoint onwards, never scanning.
RAW_EVENTS = TableSpec(
    logical_name="raw-events",
    env_var="MSGTRACK_RAW_EVENTS_TABLE",
    hash_key=Key("shard"),
    range_key=Key("sk"),
    ttl_attribute="expires_at",
    # Events out (functions/events): each new hit goes to the bus and its webhooks from this stream.
    stream="NEW_IMAGE",
)

# Consolidated tracking logs, by delivery in time order, packed in chains (``log_chains``: a delivery's
# logs spread over ``log_chains.LOG_CHAINS`` partition keys by recipient, ~14 logs to an item of at
# most 1 KB); and the opt-out feed (``opt_out_feed.py``): a sparse index of the people's opt-outs only,
# in time order, over their feed copies (``opt_out_feed_partition``). ``delivery_id`` is an ordinary
# attribute of a feed copy (projected into the feed, which lists it). A recipient's logs are found
# through the recipient's states in the indicators table (``RecipientStateModel.logs``), not an index
# here: an index entry would cost a write unit on every log.
OPT_OUT_FEED_INDEX = Index(
    "opt_out_feed",
    Key("opt_out_feed"),
    Key("sk"),
    include=("delivery_id", "recipient_id", "url_id", "at"),
)
TRACKING_LOGS = TableSpec(
    logical_name="tracking-logs",
    env_var="MSGTRACK_TRACKING_LOGS_TABLE",
    hash_key=Key("partition"),
    range_key=Key("sk"),
    indexes=(OPT_OUT_FEED_INDEX,),
    ttl_attribute="expires_at",
)


# Pre-aggregated indicators and the per-recipient / per-person state that distinct counts need.
# Written only by the tracking workflow. A recipient's states sit in the recipient's own partition
# (``models.stored_recipient_key``), which is how the recipient Tracking tab finds their logs.
INDICATORS = TableSpec(
    logical_name="indicators",
    env_var="MSGTRACK_INDICATORS_TABLE",
    hash_key=Key("delivery_id"),
    range_key=Key("sk"),
)

# The tracking workflow's state (checkpoints, lock, the pointer to a pending batch), its run records
# and the chunk items of its pending batches, which alone carry the TTL attribute: they expire days
# after any replay can need them, so no write unit is spent on deleting them.
WORKFLOW = TableSpec(
    logical_name="workflow",
    env_var="MSGTRACK_WORKFLOW_TABLE",
    hash_key=Key("pk"),
    range_key=Key("sk"),
    ttl_attribute="expires_at",
)

ALL_TABLES: tuple[TableSpec, ...] = (
    DELIVERIES,
    TRACKED_URLS,
    RAW_EVENTS,
    TRACKING_LOGS,
    INDICATORS,
    WORKFLOW,
)

# DynamoDB's rule for a table name: a table named from outside (the storage migration's retained
# tracking-logs table, in its event and its CDK context value) must match it.
TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")

# Raw events were once sharded by event id over 16 keys "00".."15"; those keys are only drained now
# (``raw_events.legacy_shards``). Today's shards are by recipient, their count a deploy-time setting.
LEGACY_RAW_EVENT_SHARDS = 16

# The partition keys of one delivery's tracking logs before chains: 16 keys by recipient. Only the
# migration of logs stored that way reads them now (``legacy_tracking_log_partition``).
TRACKING_LOG_PARTITIONS = 16


def tracking_log_partition(delivery_id: str, recipient_id: str) -> str:
    """The partition key of a tracking log: the chain holding every log of this recipient in this
    delivery (``log_chains.chain_of``, one of the delivery's ``log_chains.LOG_CHAINS`` chains)."""
    from functions.shared import log_chains  # log_chains reads the models, which read this module

    return log_chains.chain_of(delivery_id, recipient_id)


# A person's opt-out is also stored whole under its delivery's feed partition (a *feed copy*, the item
# the ``opt_out_feed`` index lists: ``log_chain_store``); no chain key ends so (``log_chains.chain_key``).
OPT_OUT_FEED_SUFFIX = "#feed"


def opt_out_feed_partition(delivery_id: str) -> str:
    return delivery_id + OPT_OUT_FEED_SUFFIX


def legacy_tracking_log_partition(delivery_id: str, recipient_id: str) -> str:
    """Where a tracking log was stored before chains: one of the delivery's ``TRACKING_LOG_PARTITIONS``
    keys, chosen by the upper bits of the recipient's crc32 (the raw-event shard takes its lower ones)."""
    digest = zlib.crc32(f"{delivery_id}\x1f{recipient_id}".encode())
    return tracking_log_partition_key(delivery_id, (digest >> 16) % TRACKING_LOG_PARTITIONS)


def tracking_log_partition_key(delivery_id: str, n: int) -> str:
    return f"{delivery_id}#{n}"


def tracking_log_partitions(delivery_id: str) -> list[str]:
    """Every partition key of the delivery's tracking logs, in the order of their numbers."""
    return [tracking_log_partition_key(delivery_id, n) for n in range(TRACKING_LOG_PARTITIONS)]
