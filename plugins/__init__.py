"""benchsuite's built-in integrators, each registered through the ``benchsuite`` entry points.

Installed as ``benchsuite_plugins``. The folder also holds ``heavyball/``, an example of a
third-party plugin package with its own ``pyproject.toml`` (not part of this package).
"""
