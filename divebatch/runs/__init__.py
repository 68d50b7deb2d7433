"""runs: see docs/ARCHITECTURE.md."""
