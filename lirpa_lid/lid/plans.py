"""Bound plans: which method shapes a LID's boxes and which certifies (and grows) them, as one token.

A plan is written ``"IBP"`` (shape and certify with one method) or ``"IBP+CROWN"`` (shape with the first,
certify and grow up to :data:`GROW` with the second): the form command lines, reproduction scripts and
cached runs use. :func:`bound_plan` turns a token into :class:`~lirpa_lid.lid.config.LIDConfig` fields,
:func:`method_label` / :func:`plan_label` into the label tables show (``"IBP → CROWN ×4"``).
"""
from __future__ import annotations

from dataclasses import replace

from lirpa_lid.bounds.core import BoundMethod
from lirpa_lid.errors import InputError
from lirpa_lid.lid.config import LIDConfig

GROW = 4.0  # default growth factor of a "shape+certify" plan: one failing probe finds the range


def bound_plan(token: str, grow: float = GROW) -> dict:
    """:class:`LIDConfig` fields for a bound plan written ``"IBP"`` (shape and certify with one method) or
    ``"IBP+CROWN"`` (shape with the first, certify and grow up to ``grow`` with the second) — the form
    command lines and cached runs use. Method names come back canonical strings (``"ibp"`` → ``"IBP"``).

    Raises:
        InputError: a malformed token or an unknown method (listing the choices).
    """
    parts = [t.strip() for t in str(token).split("+")]
    if len(parts) > 2 or not all(parts):
        raise InputError(f"bound plan {token!r}: write METHOD or SHAPE+CERTIFY (e.g. IBP+CROWN)")
    shaped = BoundMethod.parse(parts[0]).value
    if len(parts) == 1:
        return {"method": shaped}
    return {"method": shaped, "certify_method": BoundMethod.parse(parts[1]).value, "grow": float(grow)}


def bound_plans(text: str) -> list[str]:
    """A comma-separated list of bound plans (e.g. ``"IBP,IBP+CROWN"``), each checked by :func:`bound_plan`."""
    plans = [t.strip() for t in str(text).split(",") if t.strip()]
    for plan in plans:
        bound_plan(plan)
    return plans


def method_label(config: LIDConfig) -> str:
    """How a LID's boxes were bounded: ``"IBP"``, or ``"IBP → CROWN ×4"`` when a second method certifies
    (and grows, up to the factor shown) the snapshots."""
    if config.final_method is config.method and config.grow == 1:
        return config.method.value
    return f"{config.method.value} → {config.final_method.value}" + (f" ×{config.grow:g}" if config.grow > 1 else "")


def plan_label(token: str) -> str:
    """:func:`method_label` of a bound plan token (``"IBP+CROWN"`` → ``"IBP → CROWN ×4"``)."""
    return method_label(LIDConfig(**bound_plan(token)))


def with_config(config: LIDConfig, **changes) -> LIDConfig:
    """A copy of ``config`` with some fields changed (validated; method names parsed)."""
    return replace(config, **changes)
