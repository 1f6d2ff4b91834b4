"""What AALS stage 2 costs: the student's training step against the stage-1 (teacher pre-training) step.

Both trainers come from the fracture bundle's configs (``train_teacher.json``, and ``train_student.json``
merged over it): same network definition, loss, batch preparation and sharpening settings. Both run one
epoch over the same in-memory batches, made by the student config's own transforms from all three
subsets, interleaved round by round. The student step adds the teacher's forward pass without gradients on
the record-positive images without regions (D_P), the label sharpening and the EMA teacher update.
"""

from __future__ import annotations

from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader
from monai.engines import SupervisedTrainer

from benchmarks.bundle_data import FRACTURE_BUNDLE, generate_phantom
from benchmarks.report import Figure, GroupReport, Target
from benchmarks.settings import BenchmarkSettings
from benchmarks.timing import Summary, interleaved_times, per_repeat_ratios
from cxrkd_monai.engines.teacher_student import TeacherStudentTrainer
from cxrkd_monai.utils.fracture_subsets import FRACTURE_SUBSETS, RECORD_POSITIVE

__all__ = ["run"]


def _student_parser(settings: BenchmarkSettings, work_dir: Path) -> ConfigParser:
    num_images = settings.batch_size * settings.batches_per_repeat
    phantom = generate_phantom(work_dir / "phantom", num_images)
    configs = FRACTURE_BUNDLE / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train_teacher.json"), str(configs / "train_student.json")])
    parser.update(
        {
            "bundle_root": str(FRACTURE_BUNDLE),
            "dataset_dir": str(phantom),
            "ckpt_dir": str(work_dir / "models"),
            "output_dir": str(work_dir / "eval"),
            "image_size": [settings.fracture_image_size, settings.fracture_image_size],
            "batch_size": settings.batch_size,
            "num_workers": 0,
            "device": "$torch.device('cpu')",
        }
    )
    return parser


def _trainers(
    parser: ConfigParser, batches: list, work_dir: Path
) -> tuple[SupervisedTrainer, TeacherStudentTrainer]:
    torch.manual_seed(0)
    teacher_network = parser.get_parsed_content("network_def", lazy=False)
    checkpoint = work_dir / "models" / "teacher.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": teacher_network.state_dict()}, checkpoint)
    student_network = parser.get_parsed_content("network_def", lazy=False)
    learning_rate = parser.get_parsed_content("learning_rate")
    common = {
        "device": torch.device("cpu"),
        "max_epochs": 1,
        "train_data_loader": batches,
        "prepare_batch": parser.get_parsed_content("train#prepare_batch", lazy=False),
        "decollate": False,
    }
    stage1 = SupervisedTrainer(
        network=teacher_network,
        optimizer=torch.optim.Adam(teacher_network.parameters(), lr=learning_rate),
        loss_function=parser.get_parsed_content("loss", lazy=False),
        **common,
    )
    student = TeacherStudentTrainer(
        network=student_network,
        optimizer=torch.optim.Adam(student_network.parameters(), lr=learning_rate),
        loss_function=parser.get_parsed_content("hard_target_loss", lazy=False),
        soft_target_loss=parser.get_parsed_content("soft_target_loss", lazy=False),
        stage1_checkpoint=checkpoint,
        sharpening=parser.get_parsed_content("sharpening"),
        teacher_decay=parser.get_parsed_content("teacher_decay"),
        pseudo_label_weight=parser.get_parsed_content("pseudo_label_weight"),
        sharpening_strength=parser.get_parsed_content("sharpening_strength"),
        sharpening_threshold=parser.get_parsed_content("sharpening_threshold"),
        **common,
    )
    return stage1, student


def run(settings: BenchmarkSettings, work_dir: Path) -> GroupReport:
    """Measure the student step ÷ stage-1 step on the same batches."""
    parser = _student_parser(settings, work_dir)
    dataset = parser.get_parsed_content("train#dataset")
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=False, num_workers=0)
    batches = [batch for batch, _ in zip(loader, range(settings.batches_per_repeat))]
    stage1, student = _trainers(parser, batches, work_dir)
    times = interleaved_times(
        {"stage1": stage1.run, "student": student.run}, settings.repeats, settings.warmup
    )
    images = sum(len(batch["image"]) for batch in batches)
    record_positive_index = FRACTURE_SUBSETS.index(RECORD_POSITIVE)
    record_positive = sum(int((torch.as_tensor(b["subset_index"]) == record_positive_index).sum()) for b in batches)
    return GroupReport(
        name="fracture_cost",
        title="AALS student step against the stage-1 step",
        setup={
            "image size": f"{settings.fracture_image_size} px",
            "batch": settings.batch_size,
            "batches per round": len(batches),
            "D_P images per round": f"{record_positive} of {images}",
            "sharpening": parser.get_parsed_content("sharpening"),
            "warm-up rounds": settings.warmup,
        },
        notes=[
            "Both trainers run one epoch over the same in-memory batches per round (bundle transforms "
            "applied beforehand); the stage-1 trainer is the bundle's SupervisedTrainer with its loss and "
            "batch preparation.",
        ],
        figures=[
            Figure(
                "fracture_student_step_ratio",
                "fracture student step ÷ stage-1 step",
                "ratio",
                Summary.of(per_repeat_ratios(times["student"], times["stage1"])),
                Target("<=", 1.5),
            ),
            Figure(
                "fracture_stage1_images_per_second",
                "stage-1 training images/s",
                "images/s",
                Summary.of([images / seconds for seconds in times["stage1"]]),
            ),
            Figure(
                "fracture_student_images_per_second",
                "student training images/s",
                "images/s",
                Summary.of([images / seconds for seconds in times["student"]]),
            ),
        ],
    )
