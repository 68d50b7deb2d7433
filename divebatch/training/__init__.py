"""training: one run's epoch loop (trainer), its checkpoints, multi-process training and
pre-flight checks."""
