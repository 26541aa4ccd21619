"""Contract tests: openapi.yaml against the app, live fuzzing, property tests."""
