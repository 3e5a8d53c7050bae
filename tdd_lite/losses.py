"""Losses: the landmark loss (eq. 1), the discriminator losses (eq. 6, 11, 14, 15) and G's losses (eq. 16-19).

Errata applied (the book's errata page, book/errata.md):

* **Erratum 1 (D losses, eq. 6/11/14).** The paper writes ``E[log D(x)] + E[log D(x_z)]``. Maximising that
  would make D say "real" to *both* inputs. The intended GAN objective is ``E[log D(x)] + E[log(1 - D(x_z))]``
  maximised, i.e. minimising the binary cross-entropy with label 1 for the real displacement and 0 for the
  fake one: :func:`discriminator_loss`.
* **Erratum 2 (G losses, eq. 16-18).** The paper writes ``L_G = E[log D(x_z)]``, added to ``L_G`` (eq. 19)
  which is *minimised*. Minimising ``log D(x_z)`` pushes ``D(x_z)`` to 0, i.e. helps D: the wrong way (see
  :func:`literal_generator_loss` and ``tests/test_losses.py``, which checks the gradient sign). The text says G
  is trained so that D outputs "stable (1)"; we use the standard non-saturating form ``-E[log D(x_z)]``
  (BCE with label 1 on the fake): :func:`generator_adv_loss`.

All D terms take **logits** (see :mod:`tdd_lite.discriminators`) and use ``binary_cross_entropy_with_logits``,
which equals ``-log sigmoid(logit)`` without overflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

LAMBDA_ID = LAMBDA_ED = LAMBDA_TD = 0.1  # section 3.2.4


@dataclass(frozen=True)
class Lambdas:
    """Balancing factors of eq. 15/19 (the paper: 0.1 each). Set one to 0 to drop that discriminator."""

    id: float = LAMBDA_ID
    exp: float = LAMBDA_ED
    temporal: float = LAMBDA_TD


LANDMARK_NORMS = ("frobenius", "per_landmark")


def landmark_loss(pred_lmk: Tensor, gt_lmk: Tensor, norm: str = "frobenius", eps: float = 1e-12) -> Tensor:
    """Eq. 1, ``L_land = || v(:, l) - U ||_2``, averaged over the batch.

    Two readings of ``||.||_2`` (landmarks in [0, 1] crop coordinates):

    * ``"frobenius"`` (default, the literal one): ONE Euclidean norm of the whole (68, 2) difference per image,
      ``sqrt(sum_l |v_l - U_l|^2)`` = sqrt(68) x the RMS landmark error. Its gradient has norm 1 per image
      whatever the error, which is what makes the paper's lambda = 0.1 a *small* weight for the adversarial
      terms.
    * ``"per_landmark"``: the Euclidean distance of each landmark averaged over the 68 (the quantity NME
      reports before normalisation). Its gradient is sqrt(68) ~ 8x smaller; with lambda = 0.1 the
      adversarial gradients then outweigh it several times and our CPU runs diverged (``tests`` and
      notebook 06 use the default; see ``tdd_lite.train``'s docstring for the measurement).

    ``eps`` keeps the gradient finite when the prediction is exactly right.
    """
    if pred_lmk.shape != gt_lmk.shape or pred_lmk.ndim != 3 or pred_lmk.shape[-1] != 2:
        raise ValueError(f"pred_lmk {tuple(pred_lmk.shape)} and gt_lmk {tuple(gt_lmk.shape)} must both be (B, 68, 2)")
    sq = ((pred_lmk - gt_lmk) ** 2).sum(-1)  # (B, 68) squared distance per landmark
    if norm == "frobenius":
        return torch.sqrt(sq.sum(-1) + eps).mean()
    if norm == "per_landmark":
        return torch.sqrt(sq + eps).mean()
    raise ValueError(f"unknown landmark norm {norm!r}: expected one of {LANDMARK_NORMS}")


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Eq. 6 / 11 / 14 with erratum 1: ``-E[log D(x)] - E[log(1 - D(x_z))]`` (BCE, real = 1, fake = 0)."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_adv_loss(fake_logits: Tensor) -> Tensor:
    """Eq. 16 / 17 / 18 with erratum 2: the non-saturating ``-E[log D(x_z)]`` (BCE with label 1 on the fake)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def literal_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Eq. 6 exactly as printed, ``E[log D(x)] + E[log D(x_z)]`` (for teaching only; do not train with it)."""
    return F.logsigmoid(real_logits).mean() + F.logsigmoid(fake_logits).mean()


def literal_generator_loss(fake_logits: Tensor) -> Tensor:
    """Eq. 16 exactly as printed, ``E[log D(x_z)]`` (for teaching only: minimising it pushes D(x_z) to 0)."""
    return F.logsigmoid(fake_logits).mean()


def total_discriminator_loss(terms: dict[str, Tensor], lambdas: Lambdas = Lambdas()) -> Tensor:
    """Eq. 15, ``L_D = l_ID L_DID + l_ED L_DED + l_TD L_DTD`` over the terms present (keys id / exp / temporal)."""
    return _weighted(terms, lambdas)


def total_generator_loss(align: Tensor, adv_terms: dict[str, Tensor], lambdas: Lambdas = Lambdas()) -> Tensor:
    """Eq. 19, ``L_G = L_align + l_ID L_GID + l_ED L_GED + l_TD L_GTD`` (``L_align`` = eq. 1)."""
    return align + _weighted(adv_terms, lambdas) if adv_terms else align


def _weighted(terms: dict[str, Tensor], lambdas: Lambdas) -> Tensor:
    unknown = set(terms) - {"id", "exp", "temporal"}
    if unknown:
        raise ValueError(f"unknown loss terms {sorted(unknown)}: expected id, exp, temporal")
    if not terms:
        raise ValueError("no discriminator terms given")
    return sum(getattr(lambdas, k) * v for k, v in terms.items())
