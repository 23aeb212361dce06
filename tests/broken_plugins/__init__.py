"""Deliberately broken plugins, loaded by the tests through fake entry points."""
