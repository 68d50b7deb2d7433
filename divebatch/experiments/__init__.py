"""The science of many runs: measurements that branch from stored runs (critical batch size)."""
