"""Single source of the package version (read by hatch and by manifests)."""

__version__ = "0.1.0"
