"""Read-only analytics for users, vendors and staff; owns no money logic."""
