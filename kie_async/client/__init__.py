"""Base session."""
