"""Foundation helpers."""
