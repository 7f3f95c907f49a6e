"""Users, roles, profiles and authentication."""
