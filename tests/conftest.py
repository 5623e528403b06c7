"""Shared test setup: the public fixtures of ``bus.testing`` (bus, recorder)."""

pytest_plugins = ["bus.testing"]
