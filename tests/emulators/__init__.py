"""Tests of the protocol emulators."""
