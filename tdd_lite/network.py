"""The alignment network G (paper section 4.1, Fig. 3) and eq. 1's input ``v(:, l)``.

Architecture, as the paper describes it::

    image (B, 3, S, S) in [0, 1]
      -> ImageNet normalisation (a buffer inside the net, so callers always pass [0, 1] images)
      -> ResNet-18 trunk (torchvision, ``weights=None``: trained from scratch unless a local file is given)
      -> global average pool: 512
      -> Linear(512, 1025) + ReLU                         (errata page, erratum 4: 990 + 35 = 1025)
      -> split 990 | 35                                   ("proportionally to 228 and 8": 1025*228/236 = 990.3)
      -> 3DMM head:   Linear(990, 228) + ReLU + Linear(228, 228) -> alpha_id (199) | alpha_exp (29)
      -> camera head: Linear(35, 16)  + ReLU + Linear(16, 8)     -> camera (8), see :mod:`tdd_lite.camera`

ReLU everywhere except after the two last layers (the paper: "no activation functions" in the last layer).

Initialisation (so that training starts at the mean face, centred in the crop):

* ``alpha_id``/``alpha_exp`` are in units of the model's standard deviations (:mod:`tdd_lite.morphable`), so
  an output of 0 *is* the mean face. The last 3DMM layer gets bias 0 and weights scaled down by
  ``head_init_gain`` (0.01): the first prediction is the mean face up to a tiny perturbation, yet the weights
  are not exactly 0, so gradients still reach the trunk from step 1.
* The camera head's output is multiplied by a fixed buffer ``camera_scale`` = ``(f0, f0, f0, 1, f0, f0, f0,
  1)`` where ``f0`` is the scale of the initial camera. This makes the head unit-free: the 3DMM may be in
  metres (f0 ~ 5) or millimetres (f0 ~ 0.005), and without it Adam (which moves each weight by about the
  learning rate per step) would need ~1000x more steps to rotate the face in one case than in the other.
  The last camera layer's bias is ``init_camera / camera_scale`` and its weights are scaled by
  ``head_init_gain``, so the first prediction is ``init_camera``: by default
  ``tdd_lite.camera.look_at_crop(model.lmk_mean)``, the frontal mean face centred in the crop spanning 75% of
  it (training crops are enlarged boxes around the landmarks, so that is where faces are).

Without this the untrained net would put the face anywhere (a random camera), the landmark loss would start
huge and the first steps would be spent learning where the crop centre is.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from tdd_lite.camera import look_at_crop, pose_from_camera, project
from tdd_lite.morphable import MorphableModel

FEATURE_DIM = 1025  # erratum 4
SPLIT_3DMM, SPLIT_CAMERA = 990, 35
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_init_camera(model3dmm: MorphableModel, fill: float = 0.75) -> Tensor:
    """The camera G starts from: frontal mean face centred in the [0, 1] crop, spanning ``fill`` of it (8,)."""
    return look_at_crop(model3dmm.lmk_mean.detach().cpu(), fill=fill).reshape(8)


def load_backbone_weights(trunk: nn.Module, path: str | Path) -> None:
    """Load a local ResNet-18 state dict (e.g. ImageNet weights you downloaded yourself) into ``trunk``.

    Never downloads. Loaded with ``weights_only=True`` (no arbitrary code from the file); the ``fc.*`` keys of a
    classification checkpoint are ignored (G has its own head); any other mismatch raises.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: cannot read backbone weights ({e})") from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a ResNet-18 state dict, got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    try:
        missing, unexpected = trunk.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise ValueError(f"{path}: not a ResNet-18 state dict ({e})") from e
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(f"{path}: not a ResNet-18 state dict (missing {missing[:5]}, unexpected {unexpected[:5]})")


class AlignmentNet(nn.Module):
    """G: image crop -> ``(alpha_id (B, n_id), alpha_exp (B, n_exp), camera (B, 8))`` (section 4.1)."""

    def __init__(self, n_id: int = 199, n_exp: int = 29, init_camera: Tensor | None = None,
                 backbone_weights: str | Path | None = None, head_init_gain: float = 0.01):
        super().__init__()
        if n_id < 1 or n_exp < 1:
            raise ValueError(f"n_id and n_exp must be positive, got {n_id}, {n_exp}")
        self.n_id, self.n_exp = n_id, n_exp
        trunk = torchvision.models.resnet18(weights=None)
        if backbone_weights is not None:
            load_backbone_weights(trunk, backbone_weights)
        trunk.fc = nn.Identity()
        self.trunk = trunk
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.fc = nn.Linear(512, FEATURE_DIM)
        n_params = n_id + n_exp
        self.head_3dmm = nn.Sequential(nn.Linear(SPLIT_3DMM, n_params), nn.ReLU(inplace=True),
                                       nn.Linear(n_params, n_params))
        self.head_camera = nn.Sequential(nn.Linear(SPLIT_CAMERA, 16), nn.ReLU(inplace=True), nn.Linear(16, 8))

        if init_camera is None:  # a generic frontal camera for a face of unit extent centred at the origin
            init_camera = torch.tensor([0.75, 0.0, 0.0, 0.5, 0.0, -0.75, 0.0, 0.5])
        init_camera = torch.as_tensor(init_camera, dtype=torch.float32).reshape(8)
        f0 = float(pose_from_camera(init_camera[None])[0])
        if not f0 > 0:
            raise ValueError(f"init_camera has a degenerate scale {f0}")
        self.register_buffer("camera_scale", torch.tensor([f0, f0, f0, 1.0, f0, f0, f0, 1.0]))
        with torch.no_grad():
            last = self.head_3dmm[-1]
            last.weight.mul_(head_init_gain)
            last.bias.zero_()
            cam = self.head_camera[-1]
            cam.weight.mul_(head_init_gain)
            cam.bias.copy_(init_camera / self.camera_scale)

    @classmethod
    def for_model(cls, model3dmm: MorphableModel, **kwargs) -> AlignmentNet:
        """G sized for ``model3dmm`` and starting at its mean face centred in the crop."""
        kwargs.setdefault("init_camera", default_init_camera(model3dmm))
        return cls(n_id=model3dmm.n_id, n_exp=model3dmm.n_exp, **kwargs)

    def features(self, image: Tensor) -> Tensor:
        """The 1025-d feature after ``Linear(512, 1025) + ReLU`` (before the 990/35 split)."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (B, 3, H, W) in [0, 1], got {tuple(image.shape)}")
        x = (image - self.pixel_mean) / self.pixel_std
        if self.trunk.conv1.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        return torch.relu(self.fc(self.trunk(x)))

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feat = self.features(image)
        f3dmm, fcam = torch.split(feat, [SPLIT_3DMM, SPLIT_CAMERA], dim=1)
        params = self.head_3dmm(f3dmm)
        camera = self.head_camera(fcam) * self.camera_scale
        alpha_id, alpha_exp = torch.split(params, [self.n_id, self.n_exp], dim=1)
        return alpha_id, alpha_exp, camera


def predict_landmarks(model3dmm: MorphableModel, outputs: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """``v(:, l)`` of eq. 1: the 68 landmarks of the full face, projected, in [0, 1] crop coordinates (B, 68, 2)."""
    alpha_id, alpha_exp, camera = outputs
    return project(model3dmm.landmarks3d(alpha_id, alpha_exp), camera.to(model3dmm.lmk_mean.dtype))
