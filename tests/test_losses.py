"""Eq. 1, 6/11/14, 15, 16-19 against direct computations; errata 1 and 2 demonstrated by gradient signs."""

import math

import pytest
import torch

from tdd_lite import losses as L


def _two_samples():
    pred = torch.zeros(2, 68, 2)
    gt = torch.zeros(2, 68, 2)
    gt[0, :, 0] = 0.3
    gt[0, :, 1] = 0.4  # every landmark of sample 0 is 0.5 away
    gt[1, 0] = torch.tensor([3.0, 4.0])  # one landmark of sample 1 is 5 away, the rest exact
    return pred, gt


def test_landmark_loss_per_landmark_reading_is_mean_euclidean_distance():
    pred, gt = _two_samples()
    expect = (68 * 0.5 + 5.0) / (2 * 68)
    assert math.isclose(L.landmark_loss(pred, gt, norm="per_landmark").item(), expect, rel_tol=1e-5)


def test_landmark_loss_default_is_one_norm_of_the_whole_difference_per_image():
    pred, gt = _two_samples()
    expect = (math.sqrt(68 * 0.25) + 5.0) / 2  # ||.||_2 of the 136-vector, averaged over the 2 images
    assert math.isclose(L.landmark_loss(pred, gt).item(), expect, rel_tol=1e-5)
    assert math.isclose(L.landmark_loss(pred, gt, norm="frobenius").item(), expect, rel_tol=1e-5)
    p = torch.randn(3, 68, 2, requires_grad=True)
    L.landmark_loss(p, torch.zeros(3, 68, 2)).backward()
    assert torch.allclose(p.grad.flatten(1).norm(dim=1), torch.full((3,), 1 / 3), atol=1e-5)  # unit per image
    with pytest.raises(ValueError, match="norm"):
        L.landmark_loss(pred, gt, norm="l1")


def test_landmark_loss_gradient_is_finite_at_zero_error():
    pred = torch.zeros(1, 68, 2, requires_grad=True)
    for norm in ("frobenius", "per_landmark"):
        pred.grad = None
        L.landmark_loss(pred, torch.zeros(1, 68, 2), norm=norm).backward()
        assert torch.isfinite(pred.grad).all()


def test_landmark_loss_shape_mismatch_raises():
    with pytest.raises(ValueError, match="68, 2"):
        L.landmark_loss(torch.zeros(1, 68, 2), torch.zeros(1, 67, 2))


def test_discriminator_loss_is_bce_real1_fake0():
    real = torch.tensor([2.0, -1.0, 0.5])
    fake = torch.tensor([-3.0, 0.2])
    s = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    expect = (-sum(math.log(s(z)) for z in real.tolist()) / 3
              - sum(math.log(1 - s(z)) for z in fake.tolist()) / 2)
    assert math.isclose(L.discriminator_loss(real, fake).item(), expect, rel_tol=1e-6)


def test_generator_loss_is_minus_log_d_fake():
    fake = torch.tensor([-3.0, 0.2, 1.5])
    expect = -sum(math.log(1 / (1 + math.exp(-z))) for z in fake.tolist()) / 3
    assert math.isclose(L.generator_adv_loss(fake).item(), expect, rel_tol=1e-6)


def test_losses_stay_finite_for_confident_discriminators():
    big = torch.tensor([80.0, -80.0])
    assert torch.isfinite(L.discriminator_loss(big, big)) and torch.isfinite(L.generator_adv_loss(big))


def test_literal_eq16_pushes_g_the_wrong_way_and_the_corrected_one_the_right_way():
    """Erratum 2: a gradient step on eq. 16 as printed *lowers* D(fake); the non-saturating form raises it."""
    fake_logit = torch.tensor([0.3], requires_grad=True)
    L.literal_generator_loss(fake_logit).backward()
    literal_grad = fake_logit.grad.clone()
    fake_logit.grad = None
    L.generator_adv_loss(fake_logit).backward()
    corrected_grad = fake_logit.grad.clone()
    # gradient descent moves the logit by -grad; D(fake) = sigmoid(logit) rises iff the logit rises
    assert literal_grad.item() > 0, "literal eq. 16: descent lowers D(fake), i.e. G helps D"
    assert corrected_grad.item() < 0, "corrected: descent raises D(fake), G fools D"
    for grad, direction in ((literal_grad, -1), (corrected_grad, +1)):
        after = torch.sigmoid(fake_logit.detach() - 0.1 * grad)
        assert (after - torch.sigmoid(fake_logit.detach())).item() * direction > 0


def test_literal_eq6_would_call_the_fake_real():
    """Erratum 1: maximising eq. 6 as printed raises D(fake) too; the BCE form lowers it."""
    fake_logit = torch.tensor([0.0], requires_grad=True)
    real_logit = torch.tensor([0.0])
    (-L.literal_discriminator_loss(real_logit, fake_logit)).backward()  # maximise = minimise the negative
    assert fake_logit.grad.item() < 0  # descent raises the fake's logit: D learns to call fakes real
    fake_logit.grad = None
    L.discriminator_loss(real_logit, fake_logit).backward()
    assert fake_logit.grad.item() > 0  # descent lowers it


def test_eq15_and_eq19_weighted_sums():
    t = {"id": torch.tensor(1.0), "exp": torch.tensor(2.0), "temporal": torch.tensor(4.0)}
    assert math.isclose(L.total_discriminator_loss(t).item(), 0.1 * 7.0, rel_tol=1e-6)
    lam = L.Lambdas(id=0.5, exp=0.0, temporal=1.0)
    assert math.isclose(L.total_discriminator_loss(t, lam).item(), 0.5 + 4.0, rel_tol=1e-6)
    assert math.isclose(L.total_generator_loss(torch.tensor(3.0), t).item(), 3.7, rel_tol=1e-6)
    assert L.total_generator_loss(torch.tensor(3.0), {}).item() == 3.0
    assert L.LAMBDA_ID == L.LAMBDA_ED == L.LAMBDA_TD == 0.1
    with pytest.raises(ValueError, match="unknown"):
        L.total_discriminator_loss({"ID": torch.tensor(1.0)})
