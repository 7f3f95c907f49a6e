"""Wallets models."""
