"""One check of an ensemble's wiring, shared by the IMAGE, PIXELS and CROPS entry points' tests."""

from __future__ import annotations

from model_repository import configs

TYPE_UINT8 = configs.model_config_pb2.TYPE_UINT8


def parsed(config: configs.ConfigDict):
    """A config dict as Triton reads it: rendered to config.pbtxt and parsed back into ModelConfig."""
    return configs.parse_pbtxt(configs.to_pbtxt(config))


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
