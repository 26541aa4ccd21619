"""Tests mirror gateway/ and plugins/."""
