"""Statistics of certificates: Clopper–Pearson values against known values and scipy, the bound
stated for each guarantee."""
from __future__ import annotations

import json

import pytest

from lirpa_lid import InputError
from lirpa_lid.certificate.statistics import Guarantee, certified_bound, clopper_pearson_lower


# ------------------------------------------------------------------------------ statistics
def test_clopper_pearson_known_values():
    assert clopper_pearson_lower(100, 100, 0.05) == pytest.approx(0.05 ** (1 / 100), rel=1e-12)  # 0.970487
    assert clopper_pearson_lower(100, 100, 0.05) == pytest.approx(0.970487, abs=1e-6)
    assert clopper_pearson_lower(0, 50, 0.05) == 0.0
    # textbook: the exact two-sided 95% interval of 50/100 is (0.3983, 0.6017); its lower end is the
    # one-sided bound at delta = 0.025
    assert clopper_pearson_lower(50, 100, 0.025) == pytest.approx(0.398321, abs=1e-6)
    # k = 1: the lower bound solves 1 - (1 - p)^n = delta
    assert clopper_pearson_lower(1, 10, 0.05) == pytest.approx(1 - 0.95 ** (1 / 10), rel=1e-9)


@pytest.mark.parametrize("k, n", [(7, 20), (93, 100), (1, 3), (450, 457)])
def test_clopper_pearson_matches_scipy_binomtest(k, n):
    from scipy.stats import binomtest
    low = binomtest(k, n).proportion_ci(confidence_level=0.90, method="exact").low
    assert clopper_pearson_lower(k, n, 0.05) == pytest.approx(low, rel=1e-9)


@pytest.mark.parametrize("k, n, delta", [(5, 4, 0.05), (-1, 4, 0.05), (0, 0, 0.05), (2, 4, 0.0), (2, 4, 1.0)])
def test_clopper_pearson_bad_input(k, n, delta):
    with pytest.raises(InputError):
        clopper_pearson_lower(k, n, delta)


# ------------------------------------------------------------------------------ guarantee and bound
def test_guarantee_parses_the_recorded_strings_and_lists_the_choices():
    assert Guarantee.parse("deterministic") is Guarantee.DETERMINISTIC
    assert Guarantee.parse(Guarantee.FINITE_SAMPLE) is Guarantee.FINITE_SAMPLE
    assert json.dumps({"g": Guarantee.DETERMINISTIC}) == '{"g": "deterministic"}'
    assert f"{Guarantee.FINITE_SAMPLE}" == "finite-sample"
    with pytest.raises(InputError, match="unknown guarantee 'probably'; choose one of"):
        Guarantee.parse("probably")


def test_certified_bound_for_each_guarantee():
    assert certified_bound(3, 4, None, 0.0, Guarantee.DETERMINISTIC) == 0.75
    assert certified_bound(3, 4, None, 0.05) == clopper_pearson_lower(3, 4, 0.05)
    per_class = (clopper_pearson_lower(3, 4, 0.05) + clopper_pearson_lower(5, 5, 0.05)) / 2
    assert certified_bound(8, 9, {0: (3, 4), 1: (5, 5)}, 0.1) == pytest.approx(per_class, rel=1e-15)
    with pytest.raises(InputError, match="0 <= k <= n"):
        certified_bound(5, 4, None, 0.0, Guarantee.DETERMINISTIC)
