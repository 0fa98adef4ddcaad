"""The chart's documentation agrees with the chart: generated values table, case files, NOTES."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import yaml
from chart_helpers import CHART_DIR, CI_CASES, CI_DIR, HELM_DIR, render_files


def generator() -> ModuleType:
    """helm/gen_values_table.py, imported by path (helm/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_values_table", HELM_DIR / "gen_values_table.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_value_is_documented() -> None:
    text = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    assert generator().undocumented(text) == []


def test_table_lists_each_default_as_loaded() -> None:
    """The generator's own parse agrees with YAML: same keys, defaults read from the file."""
    gen = generator()
    text = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    keys = [key for key, _ in gen.documented_keys(text)]
    values = yaml.safe_load(text)
    assert len(keys) == len(set(keys))
    assert set(values) <= {key.split(".")[0] for key in keys}
    assert "probes.startup.failureThreshold" in keys


def test_generator_flags_an_undocumented_key() -> None:
    gen = generator()
    text = "# -- documented\nalpha: 1\nbeta:\n  gamma: 2\n"
    assert gen.undocumented(text) == ["beta.gamma"]


def test_values_file_names_its_schema() -> None:
    first = (CHART_DIR / "values.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=./values.schema.json"


def test_each_case_file_says_what_it_covers() -> None:
    for case in CI_CASES:
        first = (CI_DIR / case).read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# Case: "), case


def test_notes_give_service_address_and_port_forward() -> None:
    notes = render_files({})["paddleclas-triton/templates/NOTES.txt"]
    assert "port-forward service/demo-paddleclas-triton 8000:8000 8001:8001" in notes
    assert "demo-paddleclas-triton.vision.svc:8001" in notes
    assert "helm test demo" in notes
