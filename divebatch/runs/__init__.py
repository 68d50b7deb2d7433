"""runs: the run store, background workers, sweeps, the paper reproduction, the Ray backend and
run metrics."""
