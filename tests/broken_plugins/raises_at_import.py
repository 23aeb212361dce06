"""A plugin whose import fails, as a plugin with a missing dependency would."""

raise ImportError("this plugin needs a package that is not installed (deliberately broken)")
