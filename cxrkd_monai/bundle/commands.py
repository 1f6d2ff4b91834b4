"""Run a bundle's configs the way a user does: ``monai.bundle run`` in this process or as a subprocess.

The demo and the real-data results both drive the bundles through their own JSON configs with a few
overrides; this module holds that call once.
"""

from __future__ import annotations

import configparser
import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.bundle import run as bundle_run

__all__ = ["bundle_arguments", "bundle_command", "run_bundle_in_process", "run_bundle_subprocess"]


def bundle_arguments(bundle: Path, configs: Sequence[str], **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of ``monai.bundle.run`` for the bundle folder ``bundle`` and its ``configs`` (names in
    ``configs/``, merged in order), with its ``logging.conf``, ``bundle_root`` and ``overrides``."""
    return {
        "config_file": [str(bundle / "configs" / name) for name in configs],
        "logging_file": str(bundle / "configs" / "logging.conf"),
        "bundle_root": str(bundle),
        **overrides,
    }


def _command_line_value(value: Any) -> str:
    # fire reads True/False/None as Python literals, and JSON's true/false/null as strings
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool):
        return str(value)
    return json.dumps(value)


def bundle_command(bundle: Path, configs: Sequence[str], **overrides: Any) -> list[str]:
    """``python -m monai.bundle run ...`` with the arguments of :func:`bundle_arguments`.

    Example::

        bundle_command(Path("bundles/cxr_aals_fracture_detection"), ["train_teacher.json"], epochs=2)
        # [sys.executable, '-m', 'monai.bundle', 'run', '--config_file', '["…/train_teacher.json"]', …, '--epochs', '2']
    """
    command = [sys.executable, "-m", "monai.bundle", "run"]
    for key, value in bundle_arguments(bundle, configs, **overrides).items():
        command += [f"--{key}", _command_line_value(value)]
    return command


def run_bundle_subprocess(bundle: Path, configs: Sequence[str], log_path: Path, **overrides: Any) -> float:
    """Run :func:`bundle_command` with its output appended to ``log_path``; return its wall time in seconds.

    Raises:
        RuntimeError: the run failed; the message names the configs and the log, and quotes its end.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = bundle_command(bundle, configs, **overrides)
    started = time.perf_counter()
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"{bundle.name} {list(configs)} failed (exit {result.returncode}); log {log_path}:\n{tail}")
    return time.perf_counter() - started


def _logging_conf_also_to(logging_file: Path, log_path: Path) -> Path:
    """A copy of the INI ``logging_file`` whose root logger also appends to ``log_path``; written beside it."""
    conf = configparser.RawConfigParser()
    conf.read(logging_file)
    handler = "runLogHandler"
    conf["handlers"]["keys"] += f",{handler}"
    conf["logger_root"]["handlers"] += f",{handler}"
    formatter = conf["formatters"]["keys"].split(",")[0].strip()
    conf[f"handler_{handler}"] = {"class": "FileHandler", "level": "NOTSET", "formatter": formatter,
                                  "args": repr((str(log_path), "a"))}  # fmt: skip
    derived = log_path.with_name(log_path.name + ".logging.conf")
    with open(derived, "w") as out:
        conf.write(out)
    return derived


def run_bundle_in_process(bundle: Path, configs: Sequence[str], log_path: Path, **overrides: Any) -> float:
    """Run ``monai.bundle.run`` with :func:`bundle_arguments` in this process; return its wall time in seconds.

    The same run as :func:`run_bundle_subprocess` without the start of a new interpreter (importing MONAI takes
    seconds): for many short runs. The bundle's ``logging.conf`` is applied with one more handler, so that the
    run's log records also go to ``log_path``; that handler is removed when the run ends.

    Raises:
        RuntimeError: the run failed; the message names the configs and the log, and chains the error.
    """
    log_path = Path(log_path).resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    arguments = bundle_arguments(bundle, configs, **overrides)
    arguments["logging_file"] = str(_logging_conf_also_to(Path(arguments["logging_file"]), log_path))
    with open(log_path, "a") as log:
        log.write("$ monai.bundle.run in process: " + " ".join(bundle_command(bundle, configs, **overrides)[4:]) + "\n")
    started = time.perf_counter()
    try:
        bundle_run(**arguments)
    except Exception as error:
        raise RuntimeError(f"{bundle.name} {list(configs)} failed in this process; log {log_path}") from error
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == log_path:
                root.removeHandler(handler)
                handler.close()
    return time.perf_counter() - started
