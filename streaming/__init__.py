"""Metered sessions, usage events, the billing sweep and live cost."""
