"""The ``cxrkd`` command line: every subcommand's ``--help`` prints its help and exits 0, running nothing."""

import subprocess
import sys

import pytest

from cxrkd_monai.cli import COMMANDS, help_command, main


def _exit_status(arguments: list[str]) -> int:
    try:
        main(arguments)
    except SystemExit as exit_request:
        return exit_request.code or 0
    return 0


@pytest.mark.parametrize("arguments", [["--help"], ["-h"], *([name, "--help"] for name in COMMANDS)])
def test_help_exits_zero_and_prints_the_synopsis(arguments, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _exit_status(arguments) == 0
    printed = "".join(capsys.readouterr())
    assert "SYNOPSIS" in printed
    if len(arguments) == 2:
        assert f"cxrkd {arguments[0]}" in printed
    # `demo` takes **options: --help must not reach it as help=True and start a run in the working folder
    assert not list(tmp_path.iterdir())


def test_help_request_keeps_the_subcommand_and_drops_its_arguments():
    assert help_command(["report", "runs/eval", "--compare", "runs/other", "--help"]) == ["report", "--", "--help"]
    assert help_command(["-h"]) == ["--", "--help"]
    assert help_command(["unknown", "--help"]) == ["--", "--help"]
    assert help_command(["report", "runs/eval"]) is None
    # after Fire's separator, --help is Fire's own flag already
    assert help_command(["report", "--", "--help"]) is None


@pytest.mark.slow
def test_the_installed_command_exits_zero_on_help(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cxrkd_monai.cli", "report", "--help"], cwd=tmp_path, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cxrkd report" in result.stdout + result.stderr
