"""The ansor-build version; part of every artifact's cache key (bump on any change to build output)."""

__version__ = "0.2.0"
