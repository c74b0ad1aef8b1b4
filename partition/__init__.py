"""Snapshot disk discovery, sizing, layouts and the snapshot store format."""
