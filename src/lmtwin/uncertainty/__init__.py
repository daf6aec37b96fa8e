"""Calibrated intervals from the twin's own recent residuals."""

from lmtwin.uncertainty.conformal import Calibrator, coverage

__all__ = ["Calibrator", "coverage"]
