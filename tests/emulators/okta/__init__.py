"""Tests of the Okta Management API emulator."""
