"""Dashboards models."""
