"""What a certificate states, and the bound it states: Clopper–Pearson bounds from certified counts.

Finite-sample guarantee (certified accuracy). Let ``T`` be the domain and
``p = P_{(x,y)~D}[item certified for T]`` (certified: every margin lower bound over all of ``T`` is
> 0 with the recorded bound method). For any θ' in ``T`` a certified item is classified correctly, so
``acc_D(θ') ≥ p``. If the ``n`` held-out items are i.i.d. from ``D`` and independent of how ``T`` was
computed, the number ``k`` of certified ones is Binomial(n, p), and the one-sided Clopper–Pearson
bound ``L(k, n, δ)`` satisfies ``P[p ≥ L] ≥ 1 − δ``. Hence: *with probability ≥ 1 − δ over the
held-out sample, every θ' in the domain has expected accuracy ≥ L* — one event covers all θ' at
once, because ``p`` does not depend on θ'.

Balanced accuracy (mean over classes of the per-class accuracy). Conditional on the class counts
``n_c``, the items of class ``c`` are i.i.d. from ``D(x | y = c)``; per-class bounds
``L_c = L(k_c, n_c, δ/K)`` for the ``K`` classes present in the held-out sample all hold together
with probability ≥ 1 − δ (union bound), and then ``balanced_acc(θ') ≥ mean_c L_c`` for every θ'
(balanced accuracy over those ``K`` classes).

Several candidates certified on the same held-out set: each certificate holds with probability
``1 − δ``; to choose among them *by their bounds*, certify them together with
:func:`~lirpa_lid.certificate.certify.certify_all` (δ split evenly, so all statements hold
simultaneously).

Local robustness (:class:`~lirpa_lid.specification.accuracy.CertifiedAccuracy` with ``epsilon``):
the same statement about *robust* accuracy — the probability that every input of the item's clipped
ε-ball is classified correctly — since a certified item is robust for every θ' of the domain. The
record keeps ε, the norm and the clip range, so :func:`~lirpa_lid.certificate.check.recheck`
rebuilds the balls.

Deterministic guarantee (VNN-LIB properties): no sampling and no δ. ``k`` of the ``n`` properties
are certified for every θ' in the domain and every input of their boxes; the bound is ``k/n`` (1 when
all hold).

Bounds are computed in float64 round-to-nearest arithmetic and the statement is about exact
arithmetic; a float32 forward pass can differ from it by rounding.
"""
from __future__ import annotations

from collections.abc import Mapping

from lirpa_lid.errors import InputError
from lirpa_lid.specification.base import Guarantee, Specification, SpecificationKind


def check_delta(delta: float) -> float:
    """``delta`` as a float, after checking that it is a confidence parameter in (0, 1)."""
    if not (0.0 < float(delta) < 1.0):
        raise InputError(f"delta must lie in (0, 1), got {delta}")
    return float(delta)


def clopper_pearson_lower(k: int, n: int, delta: float) -> float:
    """One-sided ``1 − δ`` Clopper–Pearson lower bound on a binomial proportion from ``k`` of ``n``:
    ``Beta.ppf(δ; k, n − k + 1)``, and 0 when ``k = 0``."""
    from scipy.stats import beta  # heavy (~2 s): imported when a bound is first computed, not with the package

    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise InputError(f"Clopper-Pearson needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    delta = check_delta(delta)
    if k == 0:
        return 0.0
    return float(beta.ppf(delta, k, n - k + 1))


def certified_bound(k: int, n: int, class_counts: Mapping[int, tuple[int, int]] | None, delta: float,
                    guarantee: Guarantee | str = Guarantee.FINITE_SAMPLE) -> float:
    """The bound a certificate states for ``k`` of ``n`` certified items (module docstring).

    Deterministic: ``k/n``. Finite-sample: the Clopper–Pearson bound at ``1 − delta``, or with
    ``class_counts`` (class → ``(k_c, n_c)``, balanced specifications) the mean of the per-class bounds
    at ``delta/K`` each. Inconsistent counts raise InputError (checks report it as a reason).
    """
    if Guarantee.parse(guarantee) is Guarantee.DETERMINISTIC:
        if n < 1 or not 0 <= k <= n:
            raise InputError(f"a certificate needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
        return k / n
    if class_counts is None:
        return clopper_pearson_lower(k, n, delta)
    per_class = [clopper_pearson_lower(kc, nc, delta / len(class_counts)) for kc, nc in class_counts.values()]
    return sum(per_class) / len(per_class)


def statement_text(spec: Specification, k: int, n: int, class_counts: Mapping[int, tuple[int, int]] | None,
                   bound: float, delta: float, method: str) -> str:
    """The certificate's statement in words, for ``spec``'s guarantee and kind (module docstring)."""
    if Guarantee.parse(spec.guarantee) is Guarantee.DETERMINISTIC:
        return (f"Deterministic (no sampling): {k} of the {n} VNN-LIB properties are certified by {method} "
                f"bounds over the joint box of weights and inputs, i.e. each of them holds for every weight "
                f"vector in the domain and every input in its input box (bounds in float64 round-to-nearest "
                f"arithmetic, as in auto_LiRPA and alpha,beta-CROWN); fraction certified {bound:.6f}.")
    what = "accuracy"
    if spec.kind is SpecificationKind.LOCAL_ROBUSTNESS:
        what = (f"robust accuracy (every input of the item's L-inf ball of radius "
                f"{spec.describe()['epsilon']}, clipped to the data range, classified correctly)")
    if class_counts is None:
        return (f"With probability >= {1 - delta:.6g} over the draw of the {n} held-out items (i.i.d. from "
                f"the data distribution and independent of how the domain was computed), every weight vector "
                f"in the domain has expected {what} >= {bound:.6f} on that distribution "
                f"(one-sided Clopper-Pearson bound from {k}/{n} items certified by {method} bounds).")
    K = len(class_counts)
    return (f"With probability >= {1 - delta:.6g} over the draw of the {n} held-out items (i.i.d., independent "
            f"of how the domain was computed), every weight vector in the domain has expected balanced "
            f"{what} over the classes {sorted(class_counts)} >= {bound:.6f} (mean of per-class one-sided "
            f"Clopper-Pearson bounds at delta/{K} each, union bound over the {K} classes; certified by "
            f"{method} bounds).")
