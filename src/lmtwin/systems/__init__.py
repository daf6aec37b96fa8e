"""Simulators of the benchmark systems, written from the equations in BENCHMARK.md."""

from lmtwin.systems.cancer import CANCER_VARIABLES, Patient, simulate_patients

__all__ = ["CANCER_VARIABLES", "Patient", "simulate_patients"]
