"""Consultations models."""
