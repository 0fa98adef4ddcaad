"""The export's numbered progress lines come from pipeline.STEPS, and a step out of its place is refused."""

from __future__ import annotations

import pytest

from export.pipeline import STEPS, Progress


def test_steps_are_numbered_from_their_names(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress("NextViT_small_224")
    for step in STEPS:
        progress.step(step, f"doing {step}")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("]")[0].split()[1] for line in lines] == [f"{n}/{len(STEPS)}" for n in range(1, len(STEPS) + 1)]
    with pytest.raises(RuntimeError, match="'install' reported where 'nothing' comes"):
        progress.step("install", "once more")


def test_a_step_out_of_order_is_refused() -> None:
    progress = Progress("ViT_base_patch16_224")
    with pytest.raises(RuntimeError, match=f"'onnx' reported where '{STEPS[0]}' comes"):
        progress.step("onnx", "converting too early")
