"""report: see docs/ARCHITECTURE.md."""
