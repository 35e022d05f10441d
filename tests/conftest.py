"""Shared fixtures: the real Kafka broker (see tests/kafka_fixture.py)."""

pytest_plugins = ["tests.kafka_fixture"]
