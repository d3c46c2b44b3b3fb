"""Generic ML machinery shared by every problem: problem declaration, training with MLflow
tracking, the model registry's champion rule, and batch scoring."""

from .problem import Problem, SplitConfig

__all__ = ["Problem", "SplitConfig"]
