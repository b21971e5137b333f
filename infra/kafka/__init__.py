"""Kafka adapters: the publisher, topic admin and the concurrent consumer runner."""
