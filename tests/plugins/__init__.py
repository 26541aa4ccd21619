"""Tests of the source plugins."""
