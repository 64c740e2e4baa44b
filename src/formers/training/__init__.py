"""Training: schedules and loops."""

from formers.training.schedules import inverse_sqrt, noam

__all__ = ["inverse_sqrt", "noam"]
