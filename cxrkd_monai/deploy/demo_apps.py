"""Both MONAI Deploy apps on the demo's DICOM studies, with the bundles the demo exported (``make deploy-demo``).

``make demo`` leaves ``<demo_dir>/bundles/<bundle>`` (weights included) and ``<demo_dir>/dicom/<study>/*.dcm``
with ``<demo_dir>/dicom/datalist.json``. Each app reads one study's folder, so each runs once per study::

    python -m deploy.cxr_vkd_app -i <demo_dir>/dicom/<study> -o <demo_dir>/deploy/cxr_vkd_app/<study>
        -m <demo_dir>/bundles/cxr_vkd_classification

and writes there a DICOM SR (``<SOPInstanceUID>.dcm``: a TID 1500 Comprehensive SR, or a Basic Text SR with
``CXRKD_SR_FORMAT=text``) and ``result.json``. This module runs them and prints, per study and app, where both files
are and the findings text of ``result.json``, one line each. It needs the SDK (extra ``deploy``, installed in
``.venv-deploy`` by the Makefile).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEMO_APPS", "AppResult", "run_demo_apps"]

REPOSITORY = Path(__file__).resolve().parents[2]
DEMO_APPS = {"cxr_vkd_app": "cxr_vkd_classification", "cxr_fracture_app": "cxr_aals_fracture_detection"}
"""Each Deploy app (a package under ``deploy/``) and the bundle it runs."""


@dataclass(frozen=True)
class AppResult:
    """One app run on one study: its input file, the SR and JSON it wrote and the JSON's findings lines."""

    app: str
    input_file: Path
    sr_file: Path
    result_file: Path
    findings: list[str]


def _run_app(app: str, input_dir: Path, output_dir: Path, bundle: Path) -> None:
    command = [sys.executable, "-m", f"deploy.{app}", "-i", str(input_dir), "-o", str(output_dir), "-m", str(bundle)]
    result = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")


def run_demo_apps(demo_dir: str | Path = "demo_output") -> list[AppResult]:
    """Runs each app of :data:`DEMO_APPS` on each study of ``<demo_dir>/dicom/datalist.json`` and prints the results.

    Outputs go to ``<demo_dir>/deploy/<app>/<study>/``; an earlier run's folder is replaced.

    Returns:
        one :class:`AppResult` per study and app, studies in datalist order.

    Raises:
        FileNotFoundError: the demo's bundles or DICOM studies are missing (run ``make demo`` first).
        RuntimeError: an app failed; the message gives its command and the end of its error output.
    """
    demo_dir = Path(demo_dir).resolve()
    datalist = demo_dir / "dicom" / "datalist.json"
    bundles = {app: demo_dir / "bundles" / bundle for app, bundle in DEMO_APPS.items()}
    for path in (datalist, *(bundle / "models" / "model.pt" for bundle in bundles.values())):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; run `make demo` (DEMO_DIR={demo_dir}) first.")
    results = []
    for relative in json.loads(datalist.read_text())["test"]:
        input_file = datalist.parent / relative
        print(f"{input_file}")
        for app, bundle in bundles.items():
            output_dir = demo_dir / "deploy" / app / input_file.parent.name
            shutil.rmtree(output_dir, ignore_errors=True)
            _run_app(app, input_file.parent, output_dir, bundle)
            sr_files = sorted(output_dir.glob("*.dcm"))
            if len(sr_files) != 1:
                raise RuntimeError(f"{app} wrote {len(sr_files)} DICOM files to {output_dir}, expected one SR.")
            result_file = output_dir / "result.json"
            findings = json.loads(result_file.read_text())["findings"].splitlines()
            result = AppResult(app, input_file, sr_files[0], result_file, findings)
            print(f"  {app}: SR {result.sr_file}\n  {' ' * len(app)}  JSON {result.result_file}")
            for line in result.findings:
                print(f"    {line}")
            results.append(result)
    return results


def main(demo_dir: str = "demo_output") -> None:
    """``python -m cxrkd_monai.deploy.demo_apps --demo_dir demo_output``"""
    run_demo_apps(demo_dir)


if __name__ == "__main__":
    import fire

    fire.Fire(main)
