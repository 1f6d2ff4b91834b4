"""PosteriorPriorInferer and PrepareTextBatch: VKD's posterior and prior paths scored side by side."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import Classifier

from cxrkd_monai.engines import PrepareTextBatch
from cxrkd_monai.inferers import PosteriorPriorInferer
from cxrkd_monai.networks import VKDNet


class CountingEncoder:
    """Text encoder stand-in: the feature of a report is its length, repeated over 6 dimensions."""

    def __call__(self, reports):
        return torch.tensor([[float(len(r))] * 6 for r in reports])


def _net(classifier_input: str) -> VKDNet:
    torch.manual_seed(0)
    encoder = Classifier(in_shape=(1, 32, 32), classes=16, channels=(4, 8), strides=(2, 2))
    return VKDNet(
        3, image_encoder=encoder, image_feature_dim=16, text_feature_dim=6, latent_dim=8, hidden_dim=12,
        classifier_input=classifier_input,
    ).eval()


@pytest.mark.parametrize("classifier_input", ["z", "z_and_image"])
def test_inferer_gives_both_paths_at_their_means(classifier_input):
    net = _net(classifier_input)
    image, text = torch.rand(4, 1, 32, 32), torch.randn(4, 6)
    pred = PosteriorPriorInferer()(image, net, text_features=text)
    assert pred.shape == (4, 2, 3)
    means = net.forward_train(image, text, num_samples=0)
    torch.testing.assert_close(pred[:, 0], torch.sigmoid(means.posterior_logits[0]))
    torch.testing.assert_close(pred[:, 1], torch.sigmoid(means.prior_logits[0]))
    # the prior path is the image-only inference at z = mu_p
    net.num_inference_samples = 0
    torch.testing.assert_close(pred[:, 1], net(image))


def test_prepare_text_batch_passes_encoded_reports_to_the_inferer():
    batch = {"image": torch.zeros(2, 1, 4, 4), "label": torch.ones(2, 3), "report": ["ab", "abcd"]}
    image, label, args, kwargs = PrepareTextBatch(CountingEncoder())(batch, "cpu")
    assert image.shape == (2, 1, 4, 4) and torch.equal(label, torch.ones(2, 3)) and args == ()
    torch.testing.assert_close(kwargs["text_features"], torch.tensor([[2.0] * 6, [4.0] * 6]))
    del batch["report"]
    with pytest.raises(KeyError, match="no 'report'"):
        PrepareTextBatch(CountingEncoder())(batch, "cpu")
    with pytest.raises(ValueError, match="text_encoder"):
        PrepareTextBatch(None)
