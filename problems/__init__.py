"""benchsuite's built-in problem catalog, one module per family, registered through the
``benchsuite`` entry points. Installed as ``benchsuite_problems``."""
