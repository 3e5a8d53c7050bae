"""The displacement discriminator (paper Table 1): one class, three instances (D_ID, D_ED, D_TD).

===========  =====================================  ==========
layer        paper (Table 1)                        output
===========  =====================================  ==========
input        flattened landmark displacement        B x 136
FC1          256 nodes, ReLU, dropout 0.3           B x 256
FC2          128 nodes, ReLU, dropout 0.3           B x 128
FC3          64 nodes, ReLU, dropout 0.3            B x 64
FC4          1 node, sigmoid                        B x 1
===========  =====================================  ==========

Erratum 6: Table 1 also lists "dropout = 0.3" on FC4, the sigmoid output. Dropping the *decision* would
randomly replace D's answer by sigmoid(0) = 0.5 (and rescale the others by 1/0.7, past 1 before the
sigmoid): nonsense, so dropout sits after FC1-FC3 only.

Numerics: :meth:`DisplacementDiscriminator.forward` returns the **logit** (FC4 before the sigmoid), because
``BCEWithLogits(logit) == BCE(sigmoid(logit))`` exactly in maths but does not overflow to ``log(0)`` when D
is confident. :meth:`DisplacementDiscriminator.prob` is the paper's sigmoid output D(x) in (0, 1).
(``forward`` returns logits rather than probabilities also because DistributedDataParallel only syncs
gradients for computations that go through ``forward``.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tdd_lite.morphable import N_LANDMARKS

DISCRIMINATOR_NAMES = ("id", "exp", "temporal")


class DisplacementDiscriminator(nn.Module):
    """Table 1: (B, 68, 2) displacement -> flatten 136 -> 256 -> 128 -> 64 -> 1 (logit; sigmoid in :meth:`prob`)."""

    def __init__(self, n_landmarks: int = N_LANDMARKS, hidden: tuple[int, ...] = (256, 128, 64),
                 dropout: float = 0.3):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.n_landmarks = n_landmarks
        layers: list[nn.Module] = []
        width = 2 * n_landmarks
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))  # FC4: no dropout (erratum 6)
        self.net = nn.Sequential(*layers)

    def forward(self, disp: Tensor) -> Tensor:
        """Logit of "this displacement is real" for a (B, 68, 2) displacement: (B,)."""
        if disp.ndim != 3 or disp.shape[1:] != (self.n_landmarks, 2):
            raise ValueError(f"displacement must be (B, {self.n_landmarks}, 2), got {tuple(disp.shape)}")
        return self.net(disp.reshape(disp.shape[0], -1)).squeeze(1)

    def prob(self, disp: Tensor) -> Tensor:
        """The paper's output D(x) = sigmoid(FC4) in (0, 1): probability that ``disp`` is real (B,)."""
        return torch.sigmoid(self(disp))


def make_discriminators() -> nn.ModuleDict:
    """The three instances, keyed ``id`` (D_ID), ``exp`` (D_ED), ``temporal`` (D_TD); same architecture."""
    return nn.ModuleDict({name: DisplacementDiscriminator() for name in DISCRIMINATOR_NAMES})
