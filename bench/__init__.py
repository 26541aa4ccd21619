"""Benchmark harness: emulator and gateway in their own processes, load from an async client."""
