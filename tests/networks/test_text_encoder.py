import socket

import pytest
import torch

from cxrkd_monai.networks.text_encoder import MeanPoolingTextEncoder

REPORTS = [
    "FINDINGS: Heart size is normal. Lungs are clear. IMPRESSION: No acute cardiopulmonary process.",
    "Small left pleural effusion with adjacent atelectasis.",
]


def _no_network(*args, **kwargs):
    raise AssertionError("the text encoder tried to open a network connection")


@pytest.fixture(scope="module")
def encoder():
    """The default MiniLM encoder, built with every socket connection forbidden."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _no_network)
        patch.setattr(socket, "create_connection", _no_network)
        return MeanPoolingTextEncoder()


def test_loads_offline_and_outputs_minilm_features(encoder):
    features = encoder(REPORTS)
    assert encoder.output_dim == 384
    assert features.shape == (2, 384) and features.dtype == torch.float32
    assert torch.isfinite(features).all()


def test_matches_sentence_transformers_mean_pooling(encoder):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(encoder.model_name_or_path, device="cpu")
    # The packaged pipeline is Transformer -> mean Pooling -> Normalize, so ours normalised must agree.
    expected = torch.as_tensor(reference.encode(REPORTS, convert_to_numpy=True))
    torch.testing.assert_close(
        torch.nn.functional.normalize(encoder(REPORTS), dim=-1), expected, atol=1e-5, rtol=0
    )


def test_padding_does_not_change_features(encoder):
    alone = encoder(["No pneumothorax."])
    padded = encoder(["No pneumothorax.", REPORTS[0] * 3])
    torch.testing.assert_close(padded[:1], alone, atol=1e-5, rtol=0)


def test_text_is_truncated_to_max_length(encoder):
    long_report = " ".join(["The cardiomediastinal silhouette is within normal limits."] * 60)
    assert len(encoder.tokenizer(long_report)["input_ids"]) > encoder.max_length
    torch.testing.assert_close(encoder([long_report]), encoder([long_report + " Large right pneumothorax."]))


def test_frozen_encoder_has_no_gradient_and_stays_in_eval(encoder):
    assert encoder.is_frozen
    assert not any(parameter.requires_grad for parameter in encoder.parameters())
    encoder.train()
    assert not encoder.model.training
    assert not encoder(REPORTS[:1]).requires_grad
    assert torch.equal(encoder(REPORTS[:1]), encoder(REPORTS[:1]))


def test_trainable_layers_unfreeze_exactly_the_top_block(encoder):
    tuned = MeanPoolingTextEncoder(trainable_layers=1)
    trainable = {name for name, parameter in tuned.model.named_parameters() if parameter.requires_grad}
    top_block = {f"encoder.layer.5.{name}" for name, _ in tuned.model.encoder.layer[5].named_parameters()}
    assert trainable == top_block
    assert not tuned.is_frozen
    tuned.train()
    assert tuned.model.training
    assert tuned(REPORTS[:1]).requires_grad
    # Identity describes the weights and settings, not how the encoder is trained or where it was loaded.
    assert tuned.identity == encoder.identity


def test_identity_changes_with_max_length_and_weights(encoder):
    original = encoder.identity
    encoder.max_length = 128
    try:
        assert encoder.identity != original
    finally:
        encoder.max_length = 256
    assert encoder.identity == original
    bias = encoder.model.encoder.layer[0].output.LayerNorm.bias
    with torch.no_grad():
        bias += 1e-3
        try:
            assert encoder.identity != original
        finally:
            bias -= 1e-3


def test_empty_text_names_its_index(encoder):
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        encoder(["Clear lungs.", "  "])
    with pytest.raises(TypeError, match="sequence of strings"):
        encoder("Clear lungs.")


def test_invalid_trainable_layers_is_named():
    with pytest.raises(ValueError, match=r"trainable_layers must be in \[0, 6\].*got 7"):
        MeanPoolingTextEncoder(trainable_layers=7)
