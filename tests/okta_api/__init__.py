"""Tests of the Okta Management API client against the Okta emulator."""
