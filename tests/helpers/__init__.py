"""Test-only helpers shared across areas (no downloads, no shared data)."""
