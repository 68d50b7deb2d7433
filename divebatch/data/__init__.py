"""data: the training problems (synthetic and image datasets), their files, loaders and augmentation.

`per_sample_loss` is re-exported here for user training loops (README, Library section)."""

from divebatch.data.problem import Problem, per_sample_loss
from divebatch.data.problems import load_problem

__all__ = ["Problem", "load_problem", "per_sample_loss"]
