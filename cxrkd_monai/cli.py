"""The ``cxrkd`` command line (built with fire).

Subcommands import their implementation lazily so that ``cxrkd --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import fire

HELP_FLAGS = ("-h", "--help")


def phantom(output_dir: str, num_patients: int = 200, seed: int = 0, **options):
    """Generate the synthetic (demo/test only) chest radiograph dataset with reports and fracture boxes."""
    from cxrkd_monai.phantom import generate_phantom_dataset

    return generate_phantom_dataset(output_dir=output_dir, num_patients=num_patients, seed=seed, **options)


def prepare(dataset: str, root: str, out: str, **options):
    """Turn a dataset (mimic_cxr, openi, openi_fracture, chexpert, vindr_cxr, chestx_det10, generic_csv,
    generic_fracture_csv, fracatlas) into a bundle datalist, with a summary of what was written and skipped."""
    from cxrkd_monai.prepare.run import run_prepare

    return run_prepare(dataset=dataset, root=root, out=out, **options)


def pack(bundle_dir: str, output_zip: str, include_weights: bool = False):
    """Pack a bundle as the Model Zoo / Hugging Face zip (``<name>/configs/...``)."""
    from cxrkd_monai.bundle.pack import pack_bundle

    return str(pack_bundle(bundle_dir, output_zip, include_weights=include_weights))


def cache(bundle_dir: str, num_workers: int = 4, **options):
    """Pre-build a bundle's preprocessed image cache (training and validation datalists by default) with a
    progress bar; pass the run's overrides (``--dataset_dir``, ``--image_size``, ``--cache_dir``, ...)."""
    from cxrkd_monai.data.preprocessed_cache_builder import build_bundle_cache

    reports = build_bundle_cache(bundle_dir, num_workers=num_workers, **options)
    return {name: {**vars(report), "failed": len(report.failed)} for name, report in reports.items()}


def demo(output_dir: str = "demo_output", **options):
    """Run the main job: generate data, train/evaluate/infer both bundles, print the results."""
    from cxrkd_monai.jobs.demo import run_demo

    run_demo(output_dir=output_dir, **options)


def report(
    run_dir: str,
    compare: str | list[str] | None = None,
    tracking_uri: str | None = None,
    experiment_name: str | None = None,
    **options,
):
    """Write an evaluation run's HTML report (``<run_dir>/report/report.html``, figures inline): AUROC and FROC with
    patient-level bootstrap CIs, curves, calibration, errors, subgroups. ``--compare DIR`` (or ``'[DIR1,DIR2]'``)
    adds other runs of the same images side by side; options: see :func:`cxrkd_monai.report.write_report`.
    ``--tracking_uri URI --experiment_name NAME`` also logs the report as the ``report/`` artifacts of the MLflow
    run of that evaluation (tracked with the bundle's ``configs/mlflow_tracking.json``)."""
    from cxrkd_monai.report import write_report

    if (tracking_uri is None) != (experiment_name is None):
        raise ValueError("give both --tracking_uri and --experiment_name to log the report to MLflow, or neither.")
    page = write_report(run_dir, compare=compare, **options)
    if tracking_uri is not None:
        from cxrkd_monai.bundle import log_report_artifacts

        run_id = log_report_artifacts(page.parent, run_dir, tracking_uri, experiment_name)
        logging.getLogger(__name__).info("Logged the report to MLflow run %s.", run_id)
    return str(page)


def recalibrate(bundle_dir: str, datalist: str, datalist_key: str = "validation", **targets):
    """Refit a bundle's per-class temperatures and operating points (a fracture bundle's lesion-level points too) on
    a site's own labelled images (the bundle's own configs, no retraining) into ``models/calibration.json`` and the
    metadata; ``--sensitivity_target``, ``--ppv_target`` override the bundle's targets."""
    from cxrkd_monai.bundle.recalibrate import recalibrate_bundle

    calibration = recalibrate_bundle(bundle_dir, datalist, datalist_key=datalist_key, **targets)
    return {"temperature": dict(zip(calibration.class_names, calibration.temperature)), **calibration.fitted_on}


COMMANDS = {
    "phantom": phantom,
    "prepare": prepare,
    "pack": pack,
    "cache": cache,
    "demo": demo,
    "report": report,
    "recalibrate": recalibrate,
}


def help_command(argv: Sequence[str]) -> list[str] | None:
    """Fire's command for the help that ``argv`` asks for, or ``None`` when it asks for none.

    Fire reads ``cxrkd report --help`` as a call with a missing argument (help shown, exit status 2), and a
    subcommand taking ``**options`` (``cxrkd demo --help``) receives ``help=True`` and runs. Fire's own help
    request is ``cxrkd report -- --help``; the subcommand's other arguments are dropped, so nothing runs.

    Example::

        help_command(["report", "runs/eval", "--help"])  # ['report', '--', '--help']
    """
    arguments = list(argv)[: list(argv).index("--")] if "--" in argv else list(argv)
    if not any(flag in arguments for flag in HELP_FLAGS):
        return None
    subcommand = arguments[:1] if arguments and arguments[0] in COMMANDS else []
    return [*subcommand, "--", "--help"]


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    fire.Fire(COMMANDS, command=help_command(argv) or argv, name="cxrkd")


if __name__ == "__main__":
    main()
