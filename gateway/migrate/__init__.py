"""The Okta side of the migration: import users, prepare staged ones, sync attributes, check.

Each command is a module; the CLI (`gateway migrate ...`) is `gateway.migrate.cli`. Nothing here
imports the web layer, and nothing here ever sees a password.
"""
