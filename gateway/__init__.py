"""Okta password-import gateway: verifies imported users' passwords against their old directory."""

__version__ = "0.1.0"
