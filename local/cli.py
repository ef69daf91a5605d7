"""``msgtrack``: the command line of the local stack.

``msgtrack serve`` runs the stack in the foreground until Ctrl-C or SIGTERM. Subcommands are added to
``_parser`` one function each; ``msgtrack test-tracking`` checks a delivery's tracking end to end.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType

from functions.shared.settings import SettingsError
from functions.shared.webhooks import EVENT_TYPES
from local.scheduler import ScheduleError, parse_rate
from local.stack import DEFAULT_SCHEDULE, LocalStack

HEALTH_TIMEOUT_SECONDS = 60.0


def _schedule(expression: str) -> str:
    try:
        parse_rate(expression)
    except ScheduleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return expression


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msgtrack", description="msgtrack email message tracking, locally.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the local stack in the foreground",
        description=(
            "Run the local stack: local AWS (moto server) on a loopback port, the Lambda handlers behind a "
            "local API Gateway (HTTP API v2 payloads) on --port, and the tracking workflow on its schedule. "
            "MSGTRACK_API_TOKEN sets the API token (a random one is printed when unset); "
            "MSGTRACK_SIGNING_KEY sets the link-signing key."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument(
        "--port", type=int, default=8080, help="port of the local API Gateway (default: %(default)s)"
    )
    demo = serve.add_mutually_exclusive_group()
    demo.add_argument(
        "--demo",
        dest="demo",
        action="store_true",
        default=True,
        help="load demo deliveries and traffic (default)",
    )
    demo.add_argument("--no-demo", dest="demo", action="store_false", help="start empty")
    serve.add_argument(
        "--schedule",
        type=_schedule,
        default=DEFAULT_SCHEDULE,
        help='tracking workflow schedule, an EventBridge rate expression (default: "%(default)s")',
    )
    serve.add_argument("--access-log", action="store_true", help="log every request to stderr")
    serve.add_argument(
        "--trust-forwarded-for",
        action="store_true",
        help="take the client address from the first X-Forwarded-For entry (behind a proxy or CDN; "
        "sets MSGTRACK_TRUST_FORWARDED_FOR=true)",
    )
    serve.add_argument(
        "--allow-http-webhooks",
        action="store_true",
        help="also accept http webhook URLs and loopback receivers, for local development only "
        "(sets MSGTRACK_ALLOW_HTTP_WEBHOOKS=true)",
    )
    serve.set_defaults(run=serve_command)
    check = commands.add_parser(
        "test-tracking",
        help="test a delivery's tracking end to end and print a pass/fail table",
        description=(
            "Render a proof message for a test recipient, follow every tracked link and the open pixel "
            "through the real endpoints, check each lands on its exact target, run the tracking workflow "
            "and check each event is in the delivery's tracking logs and the test recipient's Tracking "
            "tab. Exits 0 when every link and the pixel pass, 1 otherwise."
        ),
    )
    check.add_argument("delivery_id", metavar="DELIVERY_ID")
    check.add_argument(
        "--base-url", default="http://127.0.0.1:8080", help="the stack's API URL (default: %(default)s)"
    )
    check.add_argument(
        "--tracking-base-url",
        default=None,
        help="where the stack's /r and /o links live, if not on --base-url (e.g. a tracking domain); "
        "only links there are followed",
    )
    check.add_argument("--token", default=None, help="the API token (default: $MSGTRACK_API_TOKEN)")
    check.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the workflow run (default: %(default)s)",
    )
    check.set_defaults(run=test_tracking_command)
    hooks = commands.add_parser("webhooks", help="webhooks of a running stack")
    hook_commands = hooks.add_subparsers(dest="webhooks_command", metavar="WEBHOOKS_COMMAND", required=True)
    listen = hook_commands.add_parser(
        "listen",
        help="print the events a running stack sends, verified (needs serve --allow-http-webhooks)",
        description=(
            "Start a receiver on a loopback port, register it as a webhook of the stack at --base-url, print "
            "every event whose Standard Webhooks signature verifies, and delete the webhook on Ctrl-C. The "
            "stack must run with --allow-http-webhooks."
        ),
    )
    listen.add_argument(
        "--base-url", default="http://127.0.0.1:8080", help="the stack's API URL (default: %(default)s)"
    )
    listen.add_argument("--token", default=None, help="the API token (default: $MSGTRACK_API_TOKEN)")
    listen.add_argument(
        "--events",
        default=",".join(EVENT_TYPES),
        help="comma-separated event types (default: %(default)s)",
    )
    listen.set_defaults(run=webhooks_listen_command)
    migrate = commands.add_parser(
        "migrate",
        help="move an upgraded deployment's stored states (and old tracking logs) to today's keys",
        description=(
            'The one-off storage migration of README "Upgrading", from this machine: against the tables the '
            "environment names (MSGTRACK_TABLE_PREFIX or MSGTRACK_*_TABLE, AWS credentials and region, "
            "AWS_ENDPOINT_URL for a local moto server). Holds the tracking workflow's lock, goes on until "
            "done and prints the counts as JSON. Exits 0 when done without conflicts, 1 otherwise."
        ),
    )
    migrate.add_argument(
        "--old-logs-table",
        default=None,
        help="the tracking-logs table CloudFormation retained, whose logs are copied into today's",
    )
    migrate.set_defaults(run=migrate_command)
    return parser


def migrate_command(args: argparse.Namespace) -> int:
    import json

    from functions.consolidate.migrate import DynamoMigrationStore, MigrationRefused, migrate

    try:
        answer = migrate(DynamoMigrationStore(), args.old_logs_table)
    except MigrationRefused as exc:
        print(f"msgtrack: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2), flush=True)
    return 0 if answer["done"] and not answer["conflicts"] else 1


def webhooks_listen_command(args: argparse.Namespace) -> int:
    from local.webhooks_listen import ApiRefused, listen

    token = args.token or os.environ.get("MSGTRACK_API_TOKEN")
    if not token:
        print("msgtrack: give the API token with --token or MSGTRACK_API_TOKEN", file=sys.stderr)
        return 2
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    _stop_on_signals()
    events = [event.strip() for event in args.events.split(",") if event.strip()]
    try:
        listen(args.base_url, token, events)
    except (ApiRefused, OSError) as exc:
        print(f"msgtrack: {exc}", file=sys.stderr)
        return 1
    return 0


def test_tracking_command(args: argparse.Namespace) -> int:
    from functions.api.tracking_check import check_tracking
    from functions.shared.errors import TrackingNotActivated
    from local.tracking_check import ApiError, HttpStack, table

    token = args.token or os.environ.get("MSGTRACK_API_TOKEN")
    if not token:
        print("msgtrack: give the API token with --token or MSGTRACK_API_TOKEN", file=sys.stderr)
        return 2
    try:
        result = check_tracking(
            args.delivery_id,
            HttpStack(args.base_url, token, tracking_base_url=args.tracking_base_url),
            run_timeout_seconds=args.timeout,
        )
    except (ApiError, TrackingNotActivated) as exc:
        print(f"msgtrack: {exc}", file=sys.stderr)
        return 1
    print(table(result), flush=True)
    return 0 if result.passed else 1


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both unwind the main thread through the stack's clean stop.

    SIGINT is set explicitly too: a shell starting the command in the background ignores it otherwise.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def serve_command(args: argparse.Namespace) -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # the banner must show up even when piped
    _stop_on_signals()
    stack = LocalStack(
        args.host,
        args.port,
        args.schedule,
        access_log=args.access_log,
        trust_forwarded_for=args.trust_forwarded_for,
        allow_http_webhooks=args.allow_http_webhooks,
    )
    try:
        try:
            stack.start()
        except OSError as exc:
            print(
                f"msgtrack: cannot start the local stack on {args.host}:{args.port}: {exc}", file=sys.stderr
            )
            return 1
        except SettingsError as exc:
            print(f"msgtrack: {exc}", file=sys.stderr)
            return 1
        for name, problem in stack.unavailable_functions().items():
            print(
                f"msgtrack: warning: {name} is unavailable, its requests answer 502 ({problem})",
                file=sys.stderr,
            )
        try:
            stack.wait_until_healthy(HEALTH_TIMEOUT_SECONDS)
        except TimeoutError as exc:
            print(f"msgtrack: {exc}", file=sys.stderr)
            return 1
        _banner(stack)
        if args.demo:
            _demo(stack)
        print("ready. Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    finally:
        stack.stop()


def _banner(stack: LocalStack) -> None:
    assert stack.secrets is not None
    next_run = datetime.now(UTC) + stack.period
    token_note = (
        "random, set MSGTRACK_API_TOKEN to choose"
        if stack.secrets.api_token_generated
        else "MSGTRACK_API_TOKEN"
    )
    key_note = "random for this run" if stack.secrets.signing_key_generated else "from MSGTRACK_SIGNING_KEY"
    print(
        "\n".join(
            [
                "msgtrack local stack",
                f"  dashboard     {stack.base_url}/",
                f"  API token     {stack.secrets.api_token}   ({token_note})",
                f"  signing key   {key_note}",
                f"  local AWS     {stack.aws_endpoint} (moto)",
                f"  workflow      {stack.schedule}, next run {next_run:%H:%M:%S} UTC",
            ]
        ),
        flush=True,
    )


def _demo(stack: LocalStack) -> None:
    from local import demo

    assert stack.secrets is not None
    token = stack.secrets.api_token
    print("demo:", flush=True)
    started = time.monotonic()
    try:
        result = demo.run_demo(
            stack.base_url, token, say=lambda line: print(line, flush=True), past=demo.PastHits()
        )
    except Exception as exc:  # the stack is still useful without its demo data
        print(f"msgtrack: warning: the demo did not complete: {exc}", file=sys.stderr, flush=True)
        return
    stats = result.statistics
    print(
        "\n".join(
            [
                f"  done in {time.monotonic() - started:.1f} s: run {result.run.get('id')} processed "
                f"{result.run.get('events_processed')} events",
                f"  newsletter    {result.delivery_id}  sent {stats.get('sent')}, delivered {stats.get('delivered')}, "
                f"opens {stats.get('opens')} ({stats.get('open_rate')}%), clicks {stats.get('clicks')} "
                f"({stats.get('click_rate')}%), opt-outs {stats.get('opt_outs')}",
                f"  follow-up     {result.follow_up_id}",
                f"  click link    {result.sample_click}",
                f"  open pixel    {result.sample_open}",
                "try:",
                *(f"  {line}" for line in demo.curl_lines(stack.base_url, token, result.delivery_id)),
            ]
        ),
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 2
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
