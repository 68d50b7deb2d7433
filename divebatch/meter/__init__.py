"""meter: see docs/ARCHITECTURE.md."""
