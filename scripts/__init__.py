"""Maintenance scripts (run from the checkout's root with ``python -m scripts.<name>``)."""
