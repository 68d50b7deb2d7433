"""The science of many runs: sweeps, reproductions, critical batch sizes, statistics and their
formatting. Sits above divebatch.runs (the machinery of runs)."""
