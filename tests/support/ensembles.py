"""One check of an ensemble's wiring, shared by the IMAGE and PIXELS entry points' tests."""

from __future__ import annotations


def assert_wired(ensemble, models: dict) -> None:
    """Every step reads tensors an earlier step (or the request) produced, with its model's real names.

    `ensemble` and the values of `models` are parsed ModelConfig messages, keyed by model name.
    """
    produced = {i.name for i in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = models[step.model_name]
        assert set(step.input_map) == {i.name for i in model.input}, step.model_name
        assert set(step.input_map.values()) <= produced, f"{step.model_name} reads a tensor nothing produced"
        assert set(step.output_map) <= {o.name for o in model.output}, step.model_name
        produced |= set(step.output_map.values())
    assert {o.name for o in ensemble.output} <= produced
