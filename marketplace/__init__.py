"""Categories and vendors' priced services."""
