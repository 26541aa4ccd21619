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
