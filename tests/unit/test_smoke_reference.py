"""The smoke check's comparison with the export's reference answer (client/smoke.py reference_problems).

The probabilities here are chosen to sit on either side of the tolerance; the real server's answers
are compared in tests/server/test_client_smoke.py (a wrong network fails there, the right one passes).
"""

from __future__ import annotations

import hashlib

import pytest

from catalog.models import PARITY_ATOL, SERVED_ATOL, served_atol
from client.classify import Prediction
from client.smoke import Reference, reference_check, reference_from_parameters, reference_problems
from model_repository import configs

ATOL = 1e-3
# Ten classes best first: 30 and 40 are a near-tie (0.0005 apart), 50/60 straddle the top-5 edge closely.
REFERENCE = Reference(
    "0" * 64, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100], [0.5, 0.2, 0.1, 0.0995, 0.05, 0.0496, 0.02, 0.01, 0.005, 0.004]
)


def served(pairs: list[tuple[int, float]]) -> Prediction:
    return Prediction([f"class {c}" for c, _ in pairs], [s for _, s in pairs], [c for c, _ in pairs])


def test_the_reference_itself_passes() -> None:
    top = list(zip(REFERENCE.class_ids[:5], REFERENCE.scores[:5], strict=True))
    assert reference_problems(served(top), REFERENCE, ATOL) == []


def test_a_near_tie_may_swap_and_an_edge_tie_may_enter() -> None:
    swapped = [(10, 0.5), (20, 0.2), (40, 0.0999), (30, 0.0996), (60, 0.0499)]  # 50 left through its tie with 60
    assert reference_problems(served(swapped), REFERENCE, ATOL) == []


def test_separated_classes_keep_their_order() -> None:
    (problem,) = {
        p
        for p in reference_problems(
            served([(20, 0.5), (10, 0.2), (30, 0.1), (40, 0.0995), (50, 0.05)]), REFERENCE, ATOL
        )
        if "rank 1" in p
    }
    assert "class 20 scored 0.500000, the reference 0.200000" in problem


def test_a_drifted_probability_fails() -> None:
    drift = [(10, 0.5 + 2 * ATOL), (20, 0.2), (30, 0.1), (40, 0.0995), (50, 0.05)]
    assert reference_problems(served(drift), REFERENCE, ATOL) == [
        "rank 1: class 10 scored 0.502000, the reference 0.500000 (tolerance 0.001)"
    ]


def test_a_class_from_far_below_fails_and_the_class_it_displaced_is_missed() -> None:
    answer = [(20, 0.2), (30, 0.1), (40, 0.0995), (999, 0.06), (50, 0.05)]  # 10 (0.5) gone, 999 (unlisted) in
    assert reference_problems(served(answer), REFERENCE, ATOL) == [
        "rank 4: class 999 scored 0.060000, but the reference ranks it below its 10 best (all at least 0.004000; "
        "tolerance 0.001)",
        "class 10 (reference rank 1, 0.500000) is missing from the served top-5, whose last score is 0.050000 "
        "(tolerance 0.001)",
    ]


def test_an_unlisted_class_within_the_tolerance_of_the_last_listed_one_may_appear() -> None:
    """A reference listing only five classes: a sixth may take the edge within the tolerance, not beyond."""
    five = Reference(REFERENCE.photo_sha256, [10, 20, 30, 40, 50], [0.5, 0.2, 0.1, 0.0995, 0.0495])
    top4 = [(10, 0.5), (20, 0.2), (30, 0.1), (40, 0.0995)]
    assert reference_problems(served([*top4, (77, 0.0495 + ATOL / 2)]), five, ATOL) == []
    (problem,) = reference_problems(served([*top4, (77, 0.0495 + 2 * ATOL)]), five, ATOL)
    assert problem.startswith("rank 5: class 77 scored 0.051500, but the reference ranks it below its 5 best")


def test_the_published_parameters_round_trip() -> None:
    record = {"photo_sha256": "ab" * 32, "class_ids": REFERENCE.class_ids, "scores": REFERENCE.scores}
    assert reference_from_parameters(configs.reference_parameters(record)) == Reference(
        "ab" * 32, REFERENCE.class_ids, REFERENCE.scores
    )
    assert reference_from_parameters({}) is None
    assert configs.reference_parameters(None) == {}


def test_tolerances_follow_the_precision() -> None:
    assert PARITY_ATOL < served_atol("fp32") < served_atol("FP16") == SERVED_ATOL["fp16"]
    with pytest.raises(ValueError, match="int8"):
        served_atol("int8")


def test_no_reference_or_another_photographs_reference_is_not_a_pass() -> None:
    photo = b"the bundled photograph"
    answer = served(list(zip(REFERENCE.class_ids[:5], REFERENCE.scores[:5], strict=True)))
    record = {
        "photo_sha256": hashlib.sha256(photo).hexdigest(),
        "class_ids": REFERENCE.class_ids,
        "scores": REFERENCE.scores,
    }
    published = configs.reference_parameters(record)
    assert reference_check(answer, published, photo, True, ATOL) == ([], True)
    (missing,), compared = reference_check(answer, {}, photo, True, ATOL)
    assert "no reference answer" in missing and not compared
    (other,), _ = reference_check(answer, published, b"another photograph", True, ATOL)
    assert "of another photograph" in other
    assert reference_check(answer, published, b"another photograph", False, ATOL) == ([], False)  # --image: noted
