"""Simulators of the benchmark systems, written from the equations in BENCHMARK.md."""

from lmtwin.systems.cancer import CANCER_VARIABLES, Patient, simulate_patients
from lmtwin.systems.tank import TANK_VARIABLES, simulate_tank

__all__ = ["CANCER_VARIABLES", "TANK_VARIABLES", "Patient", "simulate_patients", "simulate_tank"]
