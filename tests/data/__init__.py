"""Generators of small test data in real formats (committed code, not files)."""
