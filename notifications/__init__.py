"""Notifications and their delivery: in-app, email, SMS."""
