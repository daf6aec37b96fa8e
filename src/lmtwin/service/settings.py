"""Typed settings of ``lmtwin serve``, read from arguments or ``LMTWIN_*`` variables."""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator


def is_loopback(host: str) -> bool:
    """Whether ``host`` names a loopback address (only this machine can connect)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def hash_key(key: str) -> str:
    """The stored form of an API key (keys are random 256-bit tokens, so one SHA-256
    round is enough; nothing stores or logs a key itself)."""
    return hashlib.sha256(key.encode()).hexdigest()


class Settings(BaseModel):
    """Everything ``create_app`` needs; ``Settings.from_env()`` reads ``LMTWIN_*``.

    Example:
        >>> Settings(store="memory").llm
        'none'
    """

    store: str = Field("lmtwin.db", description=(
        "an SQLite path, 'memory', or a postgresql:// URL shared by every twin"))
    llm: str = Field("none", description=(
        "the language model added to each twin's numeric predictors: 'none' (default), "
        "'gemma3-270m', 'smollm2-135m', a GGUF path, or a model name with llm_url"))
    llm_url: str | None = Field(None, description="OpenAI-compatible base URL for llm")
    llm_threads: int = Field(2, ge=1)
    admin_key: SecretStr | None = Field(None, description=(
        "the key allowed to manage twins and keys; None: a key generated at first start "
        "(only its hash is stored; printed once)"))
    insecure: bool = Field(False, description=(
        "no authentication at all; `lmtwin serve` allows it on a loopback address only"))
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_batch: int = Field(5_000, ge=1)
    # batched rollouts run about 15,000 path-steps/s on a loaded 2-core machine: a request
    # at the cap costs a few seconds; a key's budget at most ~15 s of CPU a minute
    max_simulation_steps: int = Field(50_000, ge=1, description=(
        "the most path-steps (n_paths x horizon; for optimise every candidate's paths) one "
        "request may cost; 413 beyond"))
    cost_budget: int = Field(200_000, ge=1, description=(
        "path-steps each API key may spend per cost_window_s (429 with Retry-After beyond); "
        "at least max_simulation_steps"))
    cost_window_s: float = Field(60.0, gt=0, description="seconds in which a spent cost "
                                                         "budget refills")
    idempotency_ttl_s: float = Field(24 * 3600.0, gt=0)
    mqtt_host: str | None = Field(None, description="broker to ingest from; None: no MQTT")
    mqtt_port: int = 1883
    mqtt_prefix: str = Field("lmtwin", description="topics are PREFIX/<twin>/observations")
    assimilation_predictors: list[str] = Field(["persistence", "numeric"], description=(
        "the twin's predictors whose forecast is the Kalman prior of variables with a "
        "declared sensor noise (fast numeric ones by default: one forecast per reading)"))
    assimilation_replay: int = Field(200, ge=1, description=(
        "readings per episode replayed into the filter when a twin is loaded"))
    tune_every: int = Field(0, ge=0, description=(
        "re-tune each twin's retrieval encoder in the background every N new transitions "
        "(needs the 'tune' extra); 0: off"))
    alert_alpha: float = Field(0.0, ge=0, lt=1, description=(
        "an observation whose conformal p-value is at most this raises an anomaly alert "
        "(needs 1/alert_alpha - 1 scored readings of the variable first); 0: off, the "
        "spike and drift tests watch instead (the detection bench's choice)"))
    alert_spike: float | None = Field(None, ge=0, lt=1, description=(
        "level of the spike test (a reading out of line with the readings either side); "
        "0: off; unset: alert_alpha if set, else 0.0005 (or the smallest level "
        "alert_window reaches)"))
    alert_window: int = Field(2000, ge=10, description=(
        "normalised residuals per variable that calibrate the alerts' p-values"))
    alert_refractory: int = Field(50, ge=0, description=(
        "after a drift alert, readings of the variable that raise no other drift alert"))
    alert_threshold: float = Field(math.inf, gt=1, description=(
        "level of the drift test martingale's CUSUM (inf: not used; the drift CUSUM on "
        "normal scores watches anyway); mean time to a false alarm at least this many "
        "readings when nothing changes"))
    sse_ping_s: float = Field(15.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    model_config = {"frozen": True}

    @field_validator("assimilation_predictors", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        """LMTWIN_ASSIMILATION_PREDICTORS=persistence,numeric"""
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) \
            else value

    @model_validator(mode="after")
    def _budget_pays_for_one_request(self) -> Settings:
        if self.cost_budget < self.max_simulation_steps:
            raise ValueError("cost_budget must be at least max_simulation_steps")
        return self

    @property
    def auth(self) -> bool:
        return not self.insecure

    def check_bind(self, host: str) -> None:
        """Raise ValueError unless these settings may serve on ``host``: without
        authentication (``insecure``) only a loopback address is allowed."""
        if self.insecure and not is_loopback(host):
            raise ValueError(f"--insecure serves without authentication, so it is allowed "
                             f"on a loopback address only (127.0.0.1, ::1, localhost), not "
                             f"{host!r}; set an admin key instead (LMTWIN_ADMIN_KEY), or "
                             f"let the service generate one")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``LMTWIN_<FIELD>`` variables, then ``overrides`` on top."""
        values: dict[str, object] = {}
        for name in cls.model_fields:
            env = os.environ.get(f"LMTWIN_{name.upper()}")
            if env is not None:
                values[name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
