"""Consultation threads, messages and their paid calls."""
