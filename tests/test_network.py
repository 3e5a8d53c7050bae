"""AlignmentNet (G): sizes of section 4.1 (erratum 4), the mean-face initialisation, eq. 1's v(:, l)."""

import pytest
import torch
import torchvision

from tdd_lite.camera import project
from tdd_lite.network import AlignmentNet, default_init_camera, predict_landmarks
from tests._tiny3dmm import random_model


@pytest.fixture(scope="module")
def model():
    return random_model()


@pytest.fixture(scope="module")
def net(model):
    torch.manual_seed(0)
    return AlignmentNet.for_model(model).eval()


def test_layer_sizes_follow_the_paper(net):
    assert net.fc.in_features == 512 and net.fc.out_features == 1025  # erratum 4
    assert [m.out_features for m in net.head_3dmm if isinstance(m, torch.nn.Linear)] == [228, 228]
    assert net.head_3dmm[0].in_features == 990
    assert [m.out_features for m in net.head_camera if isinstance(m, torch.nn.Linear)] == [16, 8]
    assert net.head_camera[0].in_features == 35
    # ReLU between the two layers of each head, none after the last layer
    assert isinstance(net.head_3dmm[1], torch.nn.ReLU) and isinstance(net.head_3dmm[-1], torch.nn.Linear)
    assert isinstance(net.head_camera[1], torch.nn.ReLU) and isinstance(net.head_camera[-1], torch.nn.Linear)


def test_output_shapes(net):
    a_id, a_exp, cam = net(torch.rand(2, 3, 64, 64))
    assert a_id.shape == (2, 199) and a_exp.shape == (2, 29) and cam.shape == (2, 8)


def test_features_after_relu_are_non_negative(net):
    assert (net.features(torch.rand(2, 3, 64, 64)) >= 0).all()


def test_starts_at_the_mean_face_centred_in_the_crop(model, net):
    with torch.no_grad():
        a_id, a_exp, cam = net(torch.rand(4, 3, 64, 64))
        v = predict_landmarks(model, (a_id, a_exp, cam))
        mean_v = project(model.lmk_mean[None].expand(4, -1, -1), default_init_camera(model)[None].expand(4, -1))
    assert a_id.abs().max() < 0.05 and a_exp.abs().max() < 0.05
    assert torch.allclose(cam, default_init_camera(model)[None].expand(4, -1), rtol=0.02, atol=0.02)
    assert (v - mean_v).norm(dim=-1).max() < 0.02  # within 2% of the crop of the mean face
    centre = v.mean(1)  # look_at_crop centres the mean of the landmarks
    assert torch.allclose(centre, torch.full_like(centre, 0.5), atol=0.03)


def test_gradients_reach_the_trunk_at_step_one(model, net):
    net.train()
    out = net(torch.rand(2, 3, 64, 64))
    predict_landmarks(model, out).sum().backward()
    assert net.trunk.conv1.weight.grad is not None and net.trunk.conv1.weight.grad.abs().sum() > 0
    net.zero_grad()
    net.eval()


def test_predict_landmarks_is_eq1_input(model):
    a_id, a_exp = torch.randn(3, 199), torch.randn(3, 29)
    cam = torch.randn(3, 8)
    expect = project(model.landmarks3d(a_id, a_exp), cam)
    assert torch.allclose(predict_landmarks(model, (a_id, a_exp, cam)), expect)


def test_channels_last_gives_the_same_outputs(model):
    torch.manual_seed(1)
    a = AlignmentNet.for_model(model).eval()
    b = AlignmentNet.for_model(model).eval()
    b.load_state_dict(a.state_dict())
    b = b.to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for ya, yb in zip(a(x), b(x)):
            assert torch.allclose(ya, yb, atol=1e-5)


def test_local_backbone_weights_are_loaded(tmp_path, model):
    torch.manual_seed(2)
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pt"
    torch.save(ref.state_dict(), path)
    net = AlignmentNet.for_model(model, backbone_weights=path)
    assert torch.equal(net.trunk.conv1.weight, ref.conv1.weight)
    assert torch.equal(net.trunk.layer4[1].bn2.running_var, ref.layer4[1].bn2.running_var)


def test_bad_backbone_files_raise(tmp_path, model):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AlignmentNet.for_model(model, backbone_weights=tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    with pytest.raises((ValueError, RuntimeError), match="bad.pt"):
        AlignmentNet.for_model(model, backbone_weights=bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        AlignmentNet.for_model(model, backbone_weights=junk)


def test_bad_image_shape_raises(net):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(2, 1, 64, 64))
