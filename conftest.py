"""Registers the qclip pytest plugin for the whole repository (bench/ and tests/)."""

pytest_plugins = ["qclip.plugin", "pytester"]
