"""docs/models.md: generated, current with the catalog, and filled from a real run of every model.

The measured tables come from `make export-all` + `make docs-models` (too long for CI); what CI can
check is that its measured rows reproduce the published figures for all 19 models. That the catalog
table is current is the drift check's job (tests/unit/test_docs.py, `make docs`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import catalog
from export import memory, report

DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def rows_of(text: str, name: str) -> list[list[str]]:
    """The table rows of `name` in document order: catalog, figures, parity, GPU memory."""
    prefix = f"| `{name}` |"
    return [
        [cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines() if line.startswith(prefix)
    ]


def test_every_model_has_measured_figures_that_reproduce_the_published_ones() -> None:
    text = DOCS.read_text("utf-8")
    total = len(catalog.CATALOG)
    assert f"{total} of {total} catalog models have an export record" in text
    chart = json.loads(memory.NETWORK_FIGURES.read_text("utf-8"))["models"]
    for name, entry in catalog.CATALOG.items():
        _, figures, parity, gpu_memory, *_ = rows_of(text, name)
        assert report.MISSING not in figures and report.MISSING not in parity
        assert figures[1] == figures[2] == f"{entry.published.params_m:.2f}", (name, figures)
        assert figures[5] == figures[6] == f"{entry.published.flops_g:.2f}", (name, figures)
        assert float(parity[2]) <= float(parity[3]) == entry.parity_atol, (name, parity)
        assert parity[4] == "100% / 100%"
        # The published cap per instance is the one the chart sums (both from the same export records).
        assert report.MISSING not in gpu_memory
        assert gpu_memory[4] == f"{chart[entry.triton_name]['gpuMemLimitMiB']:,}", (name, gpu_memory)


def test_report_needs_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main(["--repository", str(tmp_path), "--output", str(tmp_path / "models.md")]) == 1
    assert "no export records" in capsys.readouterr().err
    assert not (tmp_path / "models.md").exists()
