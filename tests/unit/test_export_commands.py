"""`python -m export` is the export package's one command line: its subcommands reach each module's own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from export.__main__ import COMMANDS, main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_subcommand_answers_help_under_its_own_name(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "export", command, "--help"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith(f"usage: python -m export {command}")


def test_a_subcommand_runs_with_the_rest_of_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The report of an empty repository: the report's own refusal, through the package's command."""
    assert main(["report", "--repository", str(tmp_path), "--output", str(tmp_path / "models.md")]) == 1
    assert f"no export records in {tmp_path}" in capsys.readouterr().err
    assert not (tmp_path / "models.md").exists()


def test_the_help_names_every_subcommand() -> None:
    result = subprocess.run([sys.executable, "-m", "export", "--help"], cwd=REPO, capture_output=True, text=True)
    assert all(f"python -m export {command}" in result.stdout for command in COMMANDS)
