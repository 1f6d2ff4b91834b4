import math
import warnings

import pytest
import torch
from monai.networks.nets import Classifier
from torch import nn

from cxrkd_monai.networks.vkd import VKDNet, VKDOutput

NUM_CLASSES = 3
LATENT_DIM = 8


def small_net(**kwargs) -> VKDNet:
    """A VKDNet over a tiny MONAI CNN so that tests run in milliseconds."""
    encoder = Classifier(in_shape=(1, 32, 32), classes=16, channels=(4, 8), strides=(2, 2))
    defaults = dict(image_feature_dim=16, text_feature_dim=6, latent_dim=LATENT_DIM, hidden_dim=12)
    return VKDNet(NUM_CLASSES, image_encoder=encoder, **{**defaults, **kwargs})


class FirstLatentsAsLogits(nn.Module):
    """Classifier stand-in whose logits are the first ``C`` coordinates of ``z``, exposing the samples."""

    def forward(self, paired: torch.Tensor) -> torch.Tensor:
        return paired[:, :NUM_CLASSES]


def set_constant_gaussian(head: nn.Module, mu: float, logvar: float) -> None:
    """Make a DiagonalGaussianHead output the same (mu, logvar) for every input."""
    output = head.mlp.output
    with torch.no_grad():
        output.weight.zero_()
        output.bias[:LATENT_DIM] = mu
        output.bias[LATENT_DIM:] = logvar


@pytest.fixture
def image():
    torch.manual_seed(0)
    return torch.rand(4, 1, 32, 32)


def test_default_encoder_uses_pooled_densenet_feature():
    net = VKDNet(num_classes=2, latent_dim=4, hidden_dim=8)
    assert isinstance(net.image_encoder.class_layers.out, nn.Identity)
    assert net.encode_image(torch.rand(2, 1, 32, 32)).shape == (2, 1024)
    projected = VKDNet(num_classes=2, image_feature_dim=64, latent_dim=4, hidden_dim=8)
    assert isinstance(projected.image_encoder.class_layers.out, nn.Linear)
    assert projected.eval()(torch.rand(2, 1, 32, 32)).shape == (2, 2)


def test_shapes(image):
    net = small_net().eval()
    assert net(image).shape == (4, NUM_CLASSES)
    assert net.sample_probabilities(image, 5).shape == (5, 4, NUM_CLASSES)
    assert net.sample_probabilities(image, 0).shape == (1, 4, NUM_CLASSES)

    output = net.forward_train(image, torch.randn(4, 6), num_samples=2)
    assert isinstance(output, VKDOutput) and output.has_posterior
    for tensor in (output.prior_mu, output.prior_logvar, output.posterior_mu, output.posterior_logvar):
        assert tensor.shape == (4, LATENT_DIM)
    assert output.prior_logits.shape == output.posterior_logits.shape == (2, 4, NUM_CLASSES)

    baseline = net.forward_train(image, None, num_samples=3)
    assert not baseline.has_posterior
    assert (
        baseline.posterior_mu is None
        and baseline.posterior_logvar is None
        and baseline.posterior_logits is None
    )
    assert baseline.prior_logits.shape == (3, 4, NUM_CLASSES)


@pytest.mark.parametrize("classifier_input", ["z", "z_and_image"])
def test_deterministic_forward_uses_prior_mean(image, classifier_input):
    net = small_net(num_inference_samples=0, classifier_input=classifier_input).eval()
    first, second = net(image), net(image)
    assert torch.equal(first, second)
    features = net.image_encoder(image)
    mu, _ = net.prior(features)
    classifier_in = mu if classifier_input == "z" else torch.cat([mu, features], dim=1)
    expected = torch.sigmoid(net.classifier(classifier_in))
    torch.testing.assert_close(first, expected)
    assert ((first > 0) & (first < 1)).all()


def test_classifier_on_z_alone_reads_no_image_feature(image):
    """With ``classifier_input="z"`` both paths predict through z only: equal latents give equal logits."""
    net = small_net(classifier_input="z").eval()
    assert net.classifier_input == "z" and net.classifier.hidden_0[0].in_features == LATENT_DIM
    latent = torch.randn(2, 4, LATENT_DIM)
    features, other_features = torch.randn(4, 16), torch.randn(4, 16)
    torch.testing.assert_close(net._classify(latent, features), net._classify(latent, other_features))
    both = small_net(classifier_input="z_and_image").eval()
    assert both.classifier.hidden_0[0].in_features == LATENT_DIM + 16
    assert not torch.allclose(both._classify(latent, features), both._classify(latent, other_features))
    # the posterior path's logits are the classifier at the posterior mean alone
    output = net.forward_train(image, torch.randn(4, 6), num_samples=0)
    torch.testing.assert_close(output.posterior_logits[0], net.classifier(output.posterior_mu))


def test_forward_averages_probabilities_over_prior_samples(image):
    net = small_net(num_inference_samples=4).eval()
    torch.manual_seed(1)
    averaged = net(image)
    torch.manual_seed(1)
    samples = net.sample_probabilities(image, 4)
    torch.testing.assert_close(averaged, samples.mean(dim=0))
    assert samples.std(dim=0).min() > 0


def test_prior_samples_have_mean_mu_and_std_exp_half_logvar():
    net = small_net().double().eval()
    net.classifier = FirstLatentsAsLogits()
    # logvar = log(0.25) gives std 0.5; reading logvar itself as the scale would give std |log 0.25| = 1.39.
    set_constant_gaussian(net.prior, mu=0.5, logvar=math.log(0.25))
    torch.manual_seed(0)
    latents = torch.logit(net.sample_probabilities(torch.rand(2, 1, 32, 32, dtype=torch.float64), 20000))
    assert abs(latents.mean().item() - 0.5) < 0.01
    assert abs(latents.std().item() - 0.5) < 0.01


def test_training_samples_are_reparameterised_from_both_distributions():
    net = small_net().double()
    net.classifier = FirstLatentsAsLogits()
    set_constant_gaussian(net.prior, mu=-1.0, logvar=math.log(4.0))
    set_constant_gaussian(net.posterior, mu=2.0, logvar=math.log(0.01))
    torch.manual_seed(0)
    output = net.forward_train(
        torch.rand(2, 1, 32, 32, dtype=torch.float64), torch.randn(2, 6), num_samples=5000
    )
    assert abs(output.prior_logits.mean().item() + 1.0) < 0.05
    assert abs(output.prior_logits.std().item() - 2.0) < 0.05
    assert abs(output.posterior_logits.mean().item() - 2.0) < 0.01
    assert abs(output.posterior_logits.std().item() - 0.1) < 0.01

    means = net.forward_train(torch.rand(2, 1, 32, 32, dtype=torch.float64), torch.randn(2, 6), num_samples=0)
    assert torch.all(means.prior_logits == -1.0) and torch.all(means.posterior_logits == 2.0)


def test_text_changes_only_the_posterior(image):
    net = small_net().eval()
    first = net.forward_train(image, torch.randn(4, 6), num_samples=0)
    second = net.forward_train(image, torch.randn(4, 6), num_samples=0)
    torch.testing.assert_close(first.prior_mu, second.prior_mu)
    torch.testing.assert_close(first.prior_logits, second.prior_logits)
    assert not torch.allclose(first.posterior_mu, second.posterior_mu)


def test_network_holds_no_text_model():
    net = VKDNet(num_classes=2, latent_dim=4, hidden_dim=8)
    modules = {type(module).__module__ for module in net.modules()}
    assert not any(name.startswith("transformers") for name in modules), modules
    assert list(torch.jit.script(net).forward.schema.arguments)[1].name == "image"


@pytest.mark.parametrize("classifier_input", ["z", "z_and_image"])
def test_trace_and_script_match_eager(image, classifier_input):
    net = small_net(num_inference_samples=0, classifier_input=classifier_input).eval()
    other = torch.rand(6, 1, 32, 32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        traced = torch.jit.trace(net, image)
    own = [
        w for w in caught if issubclass(w.category, torch.jit.TracerWarning) and "cxrkd_monai" in w.filename
    ]
    assert not own, [str(w.message) for w in own]
    torch.testing.assert_close(traced(other), net(other))
    scripted = torch.jit.script(net)
    torch.testing.assert_close(scripted(other), net(other))
    assert scripted.sample_probabilities(other, 3).shape == (3, 6, NUM_CLASSES)


def test_invalid_arguments_are_named(image):
    with pytest.raises(ValueError, match="num_inference_samples"):
        small_net(num_inference_samples=-1)
    with pytest.raises(ValueError, match="latent_dim"):
        small_net(latent_dim=0)
    with pytest.raises(ValueError, match="classifier_input must be one of"):
        small_net(classifier_input="image")
    with pytest.raises(ValueError, match=r"image_feature_dim=32.*\[4, 16\]"):
        small_net(image_feature_dim=32)(image)
    with pytest.raises(ValueError, match=r"text_features.*\(4, 6\).*\(4, 5\)"):
        small_net().forward_train(image, torch.randn(4, 5))
    with pytest.raises(ValueError, match="num_samples"):
        small_net().sample_probabilities(image, -2)
