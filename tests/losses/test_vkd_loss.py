import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from cxrkd_monai.losses.vkd import VKDLoss, kl_diagonal_gaussians
from cxrkd_monai.networks.vkd import VKDOutput

LN2, LN3 = math.log(2.0), math.log(3.0)
# KL(N(1, 1) || N(0, 4)) = 0.5 * (ln 4 - 0 + (1 + 1) / 4 - 1)
TINY_KL = 0.5 * (math.log(4.0) + 0.5 - 1.0)


def diagonal_normal(mu, logvar):
    return Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)


def tiny_output(with_posterior: bool = True) -> VKDOutput:
    """One item, two classes, one sample; logits chosen so that every BCE has a closed form."""
    prior = dict(
        prior_mu=torch.zeros(1, 1),
        prior_logvar=torch.full((1, 1), math.log(4.0)),
        prior_logits=torch.tensor([[[LN3, 0.0]]]),
    )
    if not with_posterior:
        return VKDOutput(**prior)
    return VKDOutput(
        **prior,
        posterior_mu=torch.ones(1, 1),
        posterior_logvar=torch.zeros(1, 1),
        posterior_logits=torch.tensor([[[0.0, LN3]]]),
    )


TARGET = torch.tensor([[1.0, 0.0]])
# Posterior: BCE(0, 1) = ln 2, BCE(ln 3, 0) = -ln(1 - 3/4) = ln 4.
# Prior: BCE(ln 3, 1) = ln(4/3), BCE(0, 0) = ln 2.
BCE_POSTERIOR = (LN2 + math.log(4.0)) / 2
BCE_PRIOR = (math.log(4.0 / 3.0) + LN2) / 2


@pytest.mark.parametrize(("reduction", "divisor"), [("sum", 1.0), ("mean", 5.0)])
def test_kl_matches_torch_distributions(reduction, divisor):
    """``sum`` is the divergence of the 5-dimensional Gaussians, ``mean`` that divergence over D = 5."""
    torch.manual_seed(0)
    mu_q, logvar_q, mu_p, logvar_p = (torch.randn(3, 5, dtype=torch.float64) for _ in range(4))
    ours = kl_diagonal_gaussians(mu_q, logvar_q, mu_p, logvar_p, reduction=reduction)
    reference = kl_divergence(diagonal_normal(mu_q, logvar_q), diagonal_normal(mu_p, logvar_p)) / divisor
    reverse = kl_divergence(diagonal_normal(mu_p, logvar_p), diagonal_normal(mu_q, logvar_q)) / divisor
    assert ours.shape == (3,)
    torch.testing.assert_close(ours, reference)
    assert not torch.allclose(ours, reverse, rtol=1e-2)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_loss_weights_the_kl_reduced_as_configured(reduction):
    """``kl`` is the divergence and ``kl_per_dim`` that over D in both settings; the loss takes the configured one."""
    torch.manual_seed(1)
    mu_q, logvar_q, mu_p, logvar_p = (torch.randn(2, 8, dtype=torch.float64) for _ in range(4))
    logits = torch.randn(1, 2, 3, dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    terms = VKDLoss(beta=0.25, gamma=0.0, kl_reduction=reduction)(
        VKDOutput(mu_p, logvar_p, logits, mu_q, logvar_q, logits), target
    )
    reference = kl_divergence(diagonal_normal(mu_q, logvar_q), diagonal_normal(mu_p, logvar_p)).mean()
    torch.testing.assert_close(terms["kl"], reference)
    torch.testing.assert_close(terms["kl_per_dim"], reference / 8)
    weighted = reference / 8 if reduction == "mean" else reference
    torch.testing.assert_close(terms["loss"], terms["bce_posterior"] + 0.25 * weighted)
    with pytest.raises(ValueError, match="kl_reduction"):
        VKDLoss(kl_reduction="max")


def test_kl_hand_computed_and_direction():
    one, zero, log4 = torch.ones(1, 1), torch.zeros(1, 1), torch.full((1, 1), math.log(4.0))
    assert kl_diagonal_gaussians(one, zero, zero, log4).item() == pytest.approx(TINY_KL)
    # KL(N(0, 4) || N(1, 1)) = 0.5 * (0 - ln 4 + (4 + 1) / 1 - 1)
    assert kl_diagonal_gaussians(zero, log4, one, zero).item() == pytest.approx(0.5 * (4.0 - math.log(4.0)))
    assert kl_diagonal_gaussians(one, log4, one, log4).item() == 0.0


def test_kl_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="logvar_p"):
        kl_diagonal_gaussians(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4))


def test_loss_terms_hand_computed():
    terms = VKDLoss(beta=0.5, gamma=2.0)(tiny_output(), TARGET)
    assert set(terms) == {"loss", "bce_posterior", "kl", "kl_per_dim", "bce_prior"}
    assert terms["bce_posterior"].item() == pytest.approx(BCE_POSTERIOR)
    assert terms["bce_prior"].item() == pytest.approx(BCE_PRIOR)
    assert terms["kl"].item() == pytest.approx(TINY_KL)
    assert terms["loss"].item() == pytest.approx(BCE_POSTERIOR + 0.5 * TINY_KL + 2.0 * BCE_PRIOR)


def test_bce_averages_monte_carlo_samples_and_kl_averages_batch():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 4)
    target = torch.randint(0, 2, (2, 4)).float()
    mu_q, logvar_q, mu_p, logvar_p = (torch.randn(2, 6) for _ in range(4))
    output = VKDOutput(mu_p, logvar_p, logits, mu_q, logvar_q, logits.flip(0))
    terms = VKDLoss(beta=1.0, gamma=1.0)(output, target)
    per_sample = [torch.nn.functional.binary_cross_entropy_with_logits(sample, target) for sample in logits]
    torch.testing.assert_close(terms["bce_prior"], torch.stack(per_sample).mean())
    torch.testing.assert_close(terms["kl"], kl_diagonal_gaussians(mu_q, logvar_q, mu_p, logvar_p).mean())


def test_mask_excludes_unobserved_labels():
    loss = VKDLoss(beta=0.5, gamma=2.0)
    terms = loss(tiny_output(), TARGET, mask=torch.tensor([[1.0, 0.0]]))
    assert terms["bce_posterior"].item() == pytest.approx(LN2)
    assert terms["bce_prior"].item() == pytest.approx(math.log(4.0 / 3.0))
    nothing_observed = loss(tiny_output(), TARGET, mask=torch.zeros(1, 2))
    assert nothing_observed["bce_posterior"].item() == 0.0
    assert nothing_observed["loss"].item() == pytest.approx(0.5 * TINY_KL)


@pytest.mark.parametrize("hidden_value", [1.0, math.nan])
def test_a_masked_label_changes_neither_loss_nor_gradient(hidden_value):
    """The label under a zero mask may be flipped, or NaN (allowed by the item validation): same loss, same grad."""
    mask = torch.tensor([[1.0, 0.0]])

    def loss_and_grad(target):
        output = tiny_output()
        logits = output.posterior_logits.clone().requires_grad_(True)
        output = output._replace(posterior_logits=logits)
        terms = VKDLoss(beta=0.5, gamma=2.0)(output, target, mask=mask)
        terms["loss"].backward()
        return terms["loss"].detach(), logits.grad

    reference_loss, reference_grad = loss_and_grad(TARGET)
    hidden_loss, hidden_grad = loss_and_grad(torch.tensor([[1.0, hidden_value]]))
    assert torch.equal(hidden_loss, reference_loss) and torch.equal(hidden_grad, reference_grad)
    assert reference_grad[0, 0, 1] == 0.0


def test_baseline_without_posterior_is_prior_bce_alone():
    terms = VKDLoss(beta=0.5, gamma=2.0)(tiny_output(with_posterior=False), TARGET)
    assert terms["loss"].item() == pytest.approx(BCE_PRIOR)
    assert terms["kl"].item() == 0.0 and terms["bce_posterior"].item() == 0.0


def test_pos_weight_matches_torch():
    pos_weight = [2.0, 0.5]
    terms = VKDLoss(gamma=1.0, pos_weight=pos_weight)(tiny_output(with_posterior=False), TARGET)
    reference = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))(
        torch.tensor([[LN3, 0.0]]), TARGET
    )
    torch.testing.assert_close(terms["loss"], reference)
    with pytest.raises(ValueError, match="pos_weight has 3 weights"):
        VKDLoss(pos_weight=[1.0, 1.0, 1.0])(tiny_output(), TARGET)


def test_beta_is_mutable_between_calls():
    loss = VKDLoss(beta=0.0)
    before = loss(tiny_output(), TARGET)["loss"].item()
    loss.beta = 1.0
    assert loss(tiny_output(), TARGET)["loss"].item() == pytest.approx(before + TINY_KL)


def test_kl_step_pulls_prior_towards_posterior_and_posterior_towards_prior():
    torch.manual_seed(0)
    mu_q = torch.randn(4, 3, requires_grad=True)
    logvar_q = torch.full((4, 3), 0.5, requires_grad=True)
    mu_p = torch.randn(4, 3, requires_grad=True)
    logvar_p = torch.full((4, 3), -0.5, requires_grad=True)
    logits = torch.zeros(1, 4, 2)
    target = torch.ones(4, 2)
    loss = VKDLoss(beta=1.0, gamma=0.0)

    def kl_term():
        return loss(VKDOutput(mu_p, logvar_p, logits, mu_q, logvar_q, logits), target)["kl"]

    kl_before = kl_term()
    kl_before.backward()
    difference_before = (mu_q - mu_p).detach()
    with torch.no_grad():
        for parameter in (mu_q, logvar_q, mu_p, logvar_p):
            parameter -= 0.1 * parameter.grad
    gap_after = (mu_q - mu_p).detach().abs()
    assert kl_term().item() < kl_before.item()
    assert (gap_after < difference_before.abs()).all()
    # Each mean moves towards the other; the wider posterior widens the prior and is itself narrowed.
    assert (torch.sign(-mu_p.grad) == torch.sign(difference_before)).all()
    assert (torch.sign(-mu_q.grad) == -torch.sign(difference_before)).all()
    assert (logvar_p.grad < 0).all() and (logvar_q.grad > 0).all()


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"target.*\(1, 2\).*\(1, 1, 2\).*\(1, 3\)"):
        VKDLoss()(tiny_output(), torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"mask.*\(2, 2\)"):
        VKDLoss()(tiny_output(), TARGET, mask=torch.ones(2, 2))


def test_non_finite_terms_are_returned_for_the_trainer_to_name():
    """VKDTrainer's FiniteLossGuard names the failing term with the epoch, iteration and images."""
    terms = VKDLoss()(tiny_output()._replace(posterior_mu=torch.full((1, 1), float("nan"))), TARGET)
    assert torch.isnan(terms["kl"]) and torch.isnan(terms["loss"]) and torch.isfinite(terms["bce_prior"])
    terms = VKDLoss()(tiny_output()._replace(prior_logits=torch.tensor([[[float("nan"), 0.0]]])), TARGET)
    assert torch.isnan(terms["bce_prior"]) and torch.isfinite(terms["kl"])


def test_invalid_weights_are_named():
    with pytest.raises(ValueError, match="beta"):
        VKDLoss(beta=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        VKDLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="pos_weight"):
        VKDLoss(pos_weight=[1.0, 0.0])
