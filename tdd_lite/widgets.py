"""Interactive explorers (ipywidgets) that also work headless, so tests and nbval can drive them.

:class:`FaceExplorer` shows a 3DMM face rendered with its 68 landmarks and sliders for the first identity
and expression modes (in standard deviations, eq. 2/7) and for the head pose (yaw, pitch, roll in degrees).
Setting any slider's ``value`` (by hand or in code) re-renders: ``explorer.last_image`` and
``explorer.last_landmarks`` (68, 2 pixel coordinates) always hold what is displayed. In a notebook,
``display(explorer.widget)``.

Every explorer's picture keeps its aspect ratio (a fixed-size, non-stretching image: a flex row would otherwise
stretch it to the height of the slider column), and every panel carries :data:`LIVE_NOTE`: a published page holds
the saved widget state, whose sliders move without a kernel to re-render the picture.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from .camera import camera_from_pose, euler_to_rotation, look_at_crop, project
from .morphable import MorphableModel, load_teaching_model
from .render import draw_landmarks, image_vertices, render

LIVE_NOTE = ("Live only with a running Python kernel (JupyterLab: <code>make lab</code>). On a static page, such "
             "as the published book, the sliders move but the picture stays as it was saved.")


def live_note():
    """An ipywidgets HTML line saying that the explorer needs a live kernel (see :data:`LIVE_NOTE`)."""
    import ipywidgets as w

    return w.HTML(f"<small><i>{LIVE_NOTE}</i></small>", layout=w.Layout(max_width="640px"))


def fixed_image(width: int, height: int):
    """An ipywidgets PNG image of exactly ``width`` x ``height`` CSS pixels that no flex container stretches."""
    import ipywidgets as w

    return w.Image(format="png", width=int(width), height=int(height),
                   layout=w.Layout(width=f"{int(width)}px", height=f"{int(height)}px", flex="0 0 auto",
                                   object_fit="contain", align_self="flex-start"))


def png_bytes(img: np.ndarray) -> bytes:
    """An RGB uint8 image as PNG bytes."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode the image as PNG")
    return png.tobytes()


def face_camera(model: MorphableModel, yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0,
                fill: float = 0.7) -> torch.Tensor:
    """A (1, 8) camera into [0, 1] crop coordinates: the mean face at ``fill`` of the crop when frontal, the
    same scale for every pose, and the rotated mean landmarks' centre kept at the crop centre."""
    f0 = torch.linalg.matrix_norm(look_at_crop(model.lmk_mean, fill=fill).reshape(2, 4)[:, :3]) / math.sqrt(2)
    deg = math.pi / 180.0
    r = euler_to_rotation(torch.tensor([yaw_deg * deg]), torch.tensor([pitch_deg * deg]),
                          torch.tensor([roll_deg * deg]))
    cam = camera_from_pose(f0.reshape(1), r, torch.zeros(1, 2))
    centre = project(model.lmk_mean.reshape(1, -1, 3), cam)[0].mean(0)
    return camera_from_pose(f0.reshape(1), r, (0.5 - centre).reshape(1, 2))


def crop_to_pixels(camera: torch.Tensor, size: int) -> torch.Tensor:
    """The camera of ``camera`` (into [0, 1] crop coordinates) into a ``size`` x ``size`` image whose pixel
    centre ``j`` sits at crop coordinate ``(j + 0.5) / size``."""
    pix = camera.clone() * size
    pix[:, 3] -= 0.5
    pix[:, 7] -= 0.5
    return pix


class FaceExplorer:
    """Identity / expression / pose sliders re-rendering a face and its 68 landmarks.

    ``sliders`` maps names to ipywidgets sliders: ``id_0 .. id_{n_id-1}``, ``exp_0 .. exp_{n_exp-1}`` (alpha in
    standard deviations) and ``yaw``, ``pitch``, ``roll`` (degrees). ``widget`` is the whole panel.
    """

    def __init__(self, model: MorphableModel | None = None, n_id: int = 4, n_exp: int = 4, size: int = 256,
                 alpha_range: float = 3.0, pose_range: float = 60.0, fill: float = 0.6):
        import ipywidgets as w

        self.model = model if model is not None else load_teaching_model()
        self.size, self.fill = int(size), float(fill)
        n_id, n_exp = min(n_id, self.model.n_id), min(n_exp, self.model.n_exp)
        units = self.model.meta.get("expression_mode_dominant_unit", [])
        self.sliders: dict[str, w.FloatSlider] = {}
        style = {"description_width": "110px"}
        for k in range(n_id):
            self.sliders[f"id_{k}"] = w.FloatSlider(0.0, min=-alpha_range, max=alpha_range, step=0.1,
                                                    description=f"identity {k}", style=style)
        for k in range(n_exp):
            label = f"expr. {k}" + (f" ({units[k]})" if k < len(units) else "")
            self.sliders[f"exp_{k}"] = w.FloatSlider(0.0, min=-alpha_range, max=alpha_range, step=0.1,
                                                     description=label, style=style)
        for name in ("yaw", "pitch", "roll"):
            self.sliders[name] = w.FloatSlider(0.0, min=-pose_range, max=pose_range, step=1.0,
                                               description=f"{name} (deg)", style=style)
        self.image = fixed_image(self.size, self.size)
        self.widget = w.VBox([w.HBox([w.VBox(list(self.sliders.values())), self.image],
                                     layout=w.Layout(align_items="flex-start")), live_note()])
        self.last_image: np.ndarray | None = None
        self.last_landmarks: np.ndarray | None = None
        self.renders = 0
        for s in self.sliders.values():
            s.observe(self.update, names="value")
        self.update()

    def parameters(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(alpha_id (1, n_id), alpha_exp (1, n_exp), camera (1, 8) into [0, 1] crop coordinates)`` of the
        current slider values (modes without a slider are 0)."""
        alpha_id, alpha_exp = self.model.zeros(1)
        for name, s in self.sliders.items():
            if name.startswith("id_"):
                alpha_id[0, int(name[3:])] = s.value
            elif name.startswith("exp_"):
                alpha_exp[0, int(name[4:])] = s.value
        cam = face_camera(self.model, self.sliders["yaw"].value, self.sliders["pitch"].value,
                          self.sliders["roll"].value, fill=self.fill)
        return alpha_id, alpha_exp, cam

    def update(self, change=None) -> None:
        """Re-render from the sliders (called by every slider change)."""
        alpha_id, alpha_exp, cam = self.parameters()
        pix_cam = crop_to_pixels(cam, self.size)
        with torch.no_grad():
            shape = self.model.shape(alpha_id, alpha_exp)[0]
            lmk = project(self.model.landmarks3d(alpha_id, alpha_exp), pix_cam)[0].numpy()
        img = render(image_vertices(shape, pix_cam[0]), self.model.triangles, size=(self.size, self.size),
                     background=(235, 235, 240))
        img = draw_landmarks(img, lmk, color=(0, 150, 255), radius=2, connect=True)
        self.last_image, self.last_landmarks = img, lmk
        self.image.value = png_bytes(img)
        self.renders += 1
