"""DisplacementDiscriminator: Table 1 sizes, dropout placement (erratum 6), logits vs the sigmoid output."""

import pytest
import torch

from tdd_lite.discriminators import DisplacementDiscriminator, make_discriminators


def test_table1_layer_sizes():
    d = DisplacementDiscriminator()
    linears = [m for m in d.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(136, 256), (256, 128), (128, 64), (64, 1)]


def test_dropout_after_fc1_to_fc3_only():
    d = DisplacementDiscriminator()
    kinds = [type(m).__name__ for m in d.net]
    assert kinds == ["Linear", "ReLU", "Dropout"] * 3 + ["Linear"]
    assert all(m.p == 0.3 for m in d.net if isinstance(m, torch.nn.Dropout))


def test_prob_is_sigmoid_of_logits_and_in_0_1():
    torch.manual_seed(0)
    d = DisplacementDiscriminator().eval()
    x = torch.randn(5, 68, 2)
    logit = d(x)
    assert logit.shape == (5,)
    p = d.prob(x)
    assert torch.allclose(p, 1 / (1 + torch.exp(-logit)))
    assert ((p > 0) & (p < 1)).all()


def test_flattening_matches_a_manual_mlp():
    torch.manual_seed(0)
    d = DisplacementDiscriminator().eval()
    x = torch.randn(3, 68, 2)
    h = x.reshape(3, 136)
    for m in d.net:
        if isinstance(m, torch.nn.Linear):
            h = h @ m.weight.T + m.bias
        elif isinstance(m, torch.nn.ReLU):
            h = h.clamp_min(0)
    assert torch.allclose(d(x), h[:, 0], atol=1e-6)


def test_dropout_active_only_in_train_mode():
    torch.manual_seed(0)
    d = DisplacementDiscriminator()
    x = torch.randn(8, 68, 2)
    d.eval()
    assert torch.equal(d(x), d(x))
    d.train()
    assert not torch.equal(d(x), d(x))


def test_three_independent_instances():
    ds = make_discriminators()
    assert list(ds) == ["id", "exp", "temporal"]
    assert not torch.equal(ds["id"].net[0].weight, ds["exp"].net[0].weight)


def test_bad_input_raises():
    with pytest.raises(ValueError, match=r"\(B, 68, 2\)"):
        DisplacementDiscriminator()(torch.zeros(2, 136))
    with pytest.raises(ValueError, match="dropout"):
        DisplacementDiscriminator(dropout=1.0)
