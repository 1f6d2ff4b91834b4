"""Checks that an exported or configured network honours the tensor shapes promised in ``metadata.json``.

Export itself is MONAI's: ``python -m monai.bundle ckpt_export network_def --filepath models/model.ts
--ckpt_file models/model.pt --meta_file configs/metadata.json --config_file configs/inference.json`` (and
``onnx_export`` with the same arguments plus ``--input_shape``). Two things those commands do not check:

- ``verify_net_in_out`` compares only the output channels and dtype. For a network that returns maps (the
  fracture detector) the output spatial shape is part of the contract too, so
  :func:`check_network_matches_metadata` also evaluates the output ``spatial_shape`` expressions
  (``"8*n"``) with the same variables that sized the dummy input (``"32*n"``) and compares.
- A ``model.ts`` may come from a different config than the bundle's (another ``num_classes``);
  :func:`check_torchscript_matches_metadata` runs it on a dummy input of the metadata's input shape.
"""

from __future__ import annotations

import ast
import json
import operator
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from monai.data import load_net_with_metadata
from monai.utils import get_equivalent_dtype
from torch import nn

__all__ = ["check_network_matches_metadata", "check_torchscript_matches_metadata", "evaluate_spatial_shape"]

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Pow: operator.pow}


def evaluate_spatial_shape(shape: Sequence[int | str], n: int = 1, p: int = 1, any_size: int = 1) -> tuple[int, ...]:
    """The sizes a metadata ``spatial_shape`` stands for, as ``monai.bundle verify_net_in_out`` reads it.

    An entry is an int, ``"*"`` (any size: ``any_size``), or an expression in ``n`` and ``p`` made of integers,
    ``+``, ``-``, ``*`` and ``**`` (``"32*n"``, ``"2**p"``, ``"16*2**p"``).

    Raises:
        ValueError: naming the entry, for any other name, operator or type.
    """
    variables = {"n": n, "p": p}

    def evaluate(node: ast.AST, entry: str) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name) and node.id in variables:
            return variables[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](evaluate(node.left, entry), evaluate(node.right, entry))
        raise ValueError(f"spatial_shape entry {entry!r}: only integers, n, p, +, -, * and ** are supported.")

    sizes = []
    for entry in shape:
        if type(entry) is int:
            sizes.append(entry)
        elif entry == "*":
            sizes.append(any_size)
        elif isinstance(entry, str):
            try:
                tree = ast.parse(entry, mode="eval")
            except SyntaxError as error:
                raise ValueError(f"spatial_shape entry {entry!r} is not an expression in n and p.") from error
            sizes.append(int(evaluate(tree.body, entry)))
        else:
            raise ValueError(f"spatial_shape entries must be ints or strings, got {entry!r}.")
    return tuple(sizes)


def check_network_matches_metadata(
    network: nn.Module,
    metadata: Mapping,
    n: int = 1,
    p: int = 1,
    any_size: int = 1,
    source: str = "network",
) -> torch.Size:
    """Runs ``network`` on a random input shaped as ``metadata`` says and checks the output against it.

    The input is ``(1, inputs.image.num_channels, *spatial)`` with ``spatial`` evaluated from
    ``inputs.image.spatial_shape`` exactly as ``monai.bundle verify_net_in_out`` does (``"32*n"`` with ``n``,
    ``"2**p"`` with ``p``, ``"*"`` as ``any_size``). The output must have ``outputs.pred.num_channels``
    channels and ``outputs.pred.dtype``; when it has spatial axes (maps, ``(1, C, *spatial)``) they must equal
    ``outputs.pred.spatial_shape`` evaluated with the same variables. Outputs ``(1, C)`` (classification,
    ``spatial_shape [1]``) have no spatial axes to compare.

    Args:
        network: the eager or TorchScript network; it is run in eval mode without gradients on CPU.
        metadata: the parsed ``metadata.json``.
        n, p, any_size: values of the shape variables.
        source: how to name the network in error messages (its file path).

    Returns:
        the output shape.

    Raises:
        ValueError: naming ``source``, the metadata key, the expected and the actual value.

    Example::

        net = FractureFPN(num_classes=2, output_stride=4)
        check_network_matches_metadata(net, json.load(open("configs/metadata.json")), n=2)  # (1, 2, 16, 16)
    """
    io_format = metadata["network_data_format"]
    image, prediction = io_format["inputs"]["image"], io_format["outputs"]["pred"]
    input_spatial = evaluate_spatial_shape(image["spatial_shape"], n=n, p=p, any_size=any_size)
    dtype = get_equivalent_dtype(image["dtype"], torch.Tensor)
    dummy = torch.rand(1, image["num_channels"], *input_spatial).to(dtype)
    network.eval()
    with torch.no_grad():
        output = network(dummy)
    if not isinstance(output, torch.Tensor):
        raise ValueError(f"{source}: expected a tensor output for 'outputs.pred', got {type(output).__name__}.")
    if output.dim() < 2 or output.shape[1] != prediction["num_channels"]:
        raise ValueError(
            f"{source}: output shape {list(output.shape)} for input {list(dummy.shape)} does not have "
            f"metadata 'outputs.pred.num_channels' = {prediction['num_channels']} channels on axis 1."
        )
    expected_dtype = get_equivalent_dtype(prediction["dtype"], torch.Tensor)
    if output.dtype != expected_dtype:
        raise ValueError(
            f"{source}: output dtype {output.dtype} differs from metadata 'outputs.pred.dtype' {expected_dtype}."
        )
    if output.dim() > 2:
        expected_spatial = evaluate_spatial_shape(prediction["spatial_shape"], n=n, p=p, any_size=any_size)
        if tuple(output.shape[2:]) != tuple(expected_spatial):
            raise ValueError(
                f"{source}: output spatial shape {list(output.shape[2:])} for input {list(dummy.shape)} "
                f"differs from metadata 'outputs.pred.spatial_shape' {prediction['spatial_shape']} = "
                f"{list(expected_spatial)} (n={n}, p={p})."
            )
    return output.shape


def check_torchscript_matches_metadata(
    ts_path: str | Path, meta_file: str | Path | None = None, n: int = 1, p: int = 1, any_size: int = 1
) -> torch.Size:
    """Checks that a TorchScript bundle model produces the outputs its bundle's ``metadata.json`` promises.

    Args:
        ts_path: the ``model.ts`` written by ``monai.bundle ckpt_export``.
        meta_file: the bundle's ``configs/metadata.json``; when ``None``, the metadata stored inside ``ts_path``
            by ``ckpt_export`` is used.
        n, p, any_size: values of the shape variables, see :func:`check_network_matches_metadata`.

    Returns:
        the output shape for the dummy input.

    Raises:
        FileNotFoundError: naming the missing file.
        ValueError: naming ``ts_path``, ``meta_file`` and the mismatch, e.g. a model exported with
            another number of classes than ``outputs.pred.num_channels``.

    Example::

        check_torchscript_matches_metadata("models/model.ts", "configs/metadata.json")
    """
    ts_path = Path(ts_path)
    for path in (ts_path, meta_file):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"file {path} does not exist.")
    network, embedded_metadata, _ = load_net_with_metadata(str(ts_path), map_location="cpu")
    metadata = json.loads(Path(meta_file).read_text()) if meta_file is not None else embedded_metadata
    source = f"{ts_path} (checked against {meta_file or 'its embedded metadata'})"
    return check_network_matches_metadata(network, metadata, n=n, p=p, any_size=any_size, source=source)
