"""Emulators that speak real wire protocols on 127.0.0.1, for the demo, tests and benchmarks."""
