"""Tests of deploy/: the Grafana dashboard, Prometheus alert rules and a real Prometheus."""
