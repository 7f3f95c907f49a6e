"""Marketplace models."""
