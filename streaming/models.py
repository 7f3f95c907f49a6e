"""Streaming models."""
