"""Shipped YAML device profiles (one file per profile: <name>.yaml)."""
