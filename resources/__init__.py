"""Shipped resources (icons, styles, demo assets)."""
