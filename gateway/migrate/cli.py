"""`gateway migrate ...`: the migration commands. Their last lines are a contract scripts parse.

The parser is cheap to build; a command's modules (ledger, Okta client, directory listing) are
imported only when it runs, so `gateway serve` starts no slower for them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from gateway.logs import configure_logging


def add_migrate_parser(commands: Any) -> None:
    """Register `gateway migrate <command>` on the top-level parser's subcommands."""
    migrate = commands.add_parser("migrate", help="move users into Okta (import, ...)")
    verbs = migrate.add_subparsers(required=True, metavar="COMMAND")
    imp = verbs.add_parser("import", help="create a source's users in Okta with the password hook")
    imp.add_argument("-c", "--config", required=True)
    imp.add_argument("--source", required=True, help="a source name with a migration.sources entry")
    imp.add_argument("--dry-run", action="store_true", help="write nothing; print would-be counts")
    imp.add_argument("--limit", type=int, default=None, help="import at most N users")
    imp.add_argument("--report", type=Path, default=None, help="CSV of every user not created")
    imp.set_defaults(run=run_import)

    prepare = verbs.add_parser(
        "prepare", help="set the password hook on STAGED users and activate them without email"
    )
    prepare.add_argument("-c", "--config", required=True)
    prepare.add_argument("--dry-run", action="store_true", help="write nothing; print counts")
    prepare.add_argument("--report", type=Path, default=None, help="CSV of every user not done")
    prepare.set_defaults(run=run_prepare)

    rollback = verbs.add_parser(
        "rollback", help="delete the users an import run created that have not signed in yet"
    )
    rollback.add_argument("-c", "--config", required=True)
    rollback.add_argument("--run", dest="run_id", type=int, required=True, help="the import run id")
    rollback.add_argument("--dry-run", action="store_true", help="write nothing; print counts")
    rollback.set_defaults(run=run_rollback)

    sync = verbs.add_parser(
        "sync-attributes", help="copy changed source attributes to the Okta profiles"
    )
    sync.add_argument("-c", "--config", required=True)
    sync.add_argument("--source", required=True)
    sync.add_argument("--dry-run", action="store_true", help="write nothing; print counts")
    sync.add_argument("--login", default=None, help="only this Okta login")
    sync.add_argument(
        "--deactivate-gone", action="store_true", help="deactivate users gone from the source"
    )
    sync.set_defaults(run=run_sync_attributes)

    hooks = verbs.add_parser(
        "register-hooks", help="create or update the password import (and event) hook in Okta"
    )
    hooks.add_argument("-c", "--config", required=True)
    hooks.add_argument(
        "--force", action="store_true", help="re-send the hook's channel and secret (rotation)"
    )
    hooks.set_defaults(run=run_register_hooks)

    status = verbs.add_parser("status", help="how far each source's migration has come")
    status.add_argument("-c", "--config", required=True)
    status.add_argument("--json", action="store_true", help="one JSON object on stdout")
    status.add_argument(
        "--refresh", action="store_true", help="reconcile the ledger with Okta first"
    )
    status.add_argument(
        "--stragglers", type=Path, default=None, help="CSV of the users still pending"
    )
    status.set_defaults(run=run_status)

    finish = verbs.add_parser(
        "finish", help="reset, expire or deactivate the users of a retired source still pending"
    )
    finish.add_argument("-c", "--config", required=True)
    finish.add_argument("--source", required=True)
    finish.add_argument(
        "--action", required=True, choices=("reset_password", "expire_password", "deactivate")
    )
    finish.add_argument("--dry-run", action="store_true", help="write nothing; print counts")
    finish.add_argument("--report", type=Path, default=None, help="CSV of every user's outcome")
    finish.add_argument(
        "--force", action="store_true", help="even if the source is not ready to retire"
    )
    finish.set_defaults(run=run_finish)

    check = verbs.add_parser("check", help="preflight: Okta API, hooks, sources, ledger")
    check.add_argument("-c", "--config", required=True)
    check.set_defaults(run=run_check)


def run_import(args: argparse.Namespace) -> int:
    """`gateway migrate import`; exit 0 when no user failed."""
    from gateway.cli import load_or_report
    from gateway.migrate import commands

    config = load_or_report(args.config)
    if config is None:
        return 1
    problem = commands.import_problem(config, args.source)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    configure_logging("warning", "text")
    return asyncio.run(commands.run_import(config, args))


def run_prepare(args: argparse.Namespace) -> int:
    """`gateway migrate prepare`: the seed's flow 01 for users left STAGED."""
    from gateway.migrate import prepare

    return prepare.main(args)


def run_rollback(args: argparse.Namespace) -> int:
    """`gateway migrate rollback`: undo a mistaken import run."""
    from gateway.migrate import rollback

    return rollback.main(args)


def run_sync_attributes(args: argparse.Namespace) -> int:
    """`gateway migrate sync-attributes`: the seed's attribute flow."""
    from gateway.migrate import sync

    return sync.main(args)


def run_register_hooks(args: argparse.Namespace) -> int:
    """`gateway migrate register-hooks`: the hooks Okta needs, created once."""
    from gateway.migrate import hooks

    return hooks.main(args)


def run_status(args: argparse.Namespace) -> int:
    """`gateway migrate status`: per-source progress from the ledger (optionally refreshed)."""
    from gateway.migrate import status

    return status.main(args)


def run_finish(args: argparse.Namespace) -> int:
    """`gateway migrate finish`: the action for a retired source's pending users."""
    from gateway.migrate import finish

    return finish.main(args)


def run_check(args: argparse.Namespace) -> int:
    """`gateway migrate check`: one PASS/WARN/FAIL line per check; exit 1 on any FAIL."""
    from gateway.migrate import check

    return check.main(args)
