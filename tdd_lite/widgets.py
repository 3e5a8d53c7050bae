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
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

from . import displacement as disp
from . import style
from .camera import camera_from_pose, euler_to_rotation, look_at_crop, project
from .errors import require_module
from .morphable import MorphableModel, load_teaching_model
from .render import draw_landmarks, image_vertices, render


def ipywidgets():
    """The ``ipywidgets`` module (the ``book`` extra), or one line saying how to install it."""
    return require_module("ipywidgets", "ipywidgets", "book", "the interactive explorers")


LIVE_NOTE = ("Live only with a running Python kernel (JupyterLab: <code>make lab</code>). On a static page, such "
             "as the published book, the sliders move but the picture stays as it was saved.")


def live_note():
    """An ipywidgets HTML line saying that the explorer needs a live kernel (see :data:`LIVE_NOTE`)."""
    w = ipywidgets()
    return w.HTML(f"<small><i>{LIVE_NOTE}</i></small>", layout=w.Layout(max_width="640px"))


def fixed_image(width: int, height: int):
    """An ipywidgets PNG image of exactly ``width`` x ``height`` CSS pixels that no flex container stretches."""
    w = ipywidgets()
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
        w = ipywidgets()
        self.model = model if model is not None else load_teaching_model()
        self.size, self.fill = int(size), float(fill)
        n_id, n_exp = min(n_id, self.model.n_id), min(n_exp, self.model.n_exp)
        units = self.model.meta.get("expression_mode_dominant_unit", [])
        self.sliders: dict[str, w.FloatSlider] = {}
        slider_style = {"description_width": "110px"}
        for k in range(n_id):
            self.sliders[f"id_{k}"] = w.FloatSlider(0.0, min=-alpha_range, max=alpha_range, step=0.1,
                                                    description=f"identity {k}", style=slider_style)
        for k in range(n_exp):
            label = f"expr. {k}" + (f" ({units[k]})" if k < len(units) else "")
            self.sliders[f"exp_{k}"] = w.FloatSlider(0.0, min=-alpha_range, max=alpha_range, step=0.1,
                                                     description=label, style=slider_style)
        for name in ("yaw", "pitch", "roll"):
            self.sliders[name] = w.FloatSlider(0.0, min=-pose_range, max=pose_range, step=1.0,
                                               description=f"{name} (deg)", style=slider_style)
        _readable(self.sliders)
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


SLIDER_WIDTH = "300px"


def _readable(sliders: dict) -> None:
    """Slider labels and readouts never cut off: each label at its natural width (``description_width:
    initial``) inside a fixed width for label, track and readout together, which also keeps the sliders beside
    the explorer's picture within a book page's column."""
    w = ipywidgets()
    for s in sliders.values():
        s.style.description_width = "initial"
        s.layout = w.Layout(width=SLIDER_WIDTH, min_width=SLIDER_WIDTH)


def _figure_png(fig) -> tuple[bytes, np.ndarray]:
    """A matplotlib figure rendered off-screen (Agg): (PNG bytes, RGB array); the figure is closed."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()

    plt.close(fig)
    return png_bytes(rgb), rgb


def _square_limits(ax, *points: np.ndarray, margin: float = 0.08) -> None:
    """Equal-aspect limits around (N, 2) point sets in image orientation (y down)."""
    pts = np.concatenate([np.asarray(p).reshape(-1, 2) for p in points])
    lo, hi = pts.min(0), pts.max(0)
    c, half = (lo + hi) / 2, (hi - lo).max() / 2 + margin
    ax.set_xlim(c[0] - half, c[0] + half)
    ax.set_ylim(c[1] + half, c[1] - half)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


class DisplacementExplorer:
    """Identity / expression sliders for a *prediction*, against a fixed ground truth ``U``: shows the landmarks
    ``v``, ``v_exp`` (eq. 2-3), ``v_id`` (eq. 7-8) and, as arrows, the real and fake displacements of the chosen
    discriminator (``"ID"``: ``U - v_exp`` and ``v - v_exp``, eq. 4-5; ``"ED"``: ``U - v_id`` and ``v - v_id``,
    eq. 9-10).

    ``sliders``: ``id_0 ..`` and ``exp_0 ..`` (the prediction's alpha, in standard deviations) and ``which``
    (a toggle, ``"ID"`` or ``"ED"``). After every change ``last`` holds the tensors drawn (``v``, ``v_exp``,
    ``v_id``, ``real``, ``fake``, each (68, 2) in crop coordinates) and ``last_image`` the picture.
    """

    def __init__(self, model: MorphableModel, truth: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                 n_id: int = 3, n_exp: int = 3, size: int = 420, alpha_range: float = 3.0):
        w = ipywidgets()
        self.model, self.size = model, int(size)
        self.true_id, self.true_exp, self.camera = (t.detach().reshape(1, -1) for t in truth)
        with torch.no_grad():
            self.U = project(model.landmarks3d(self.true_id, self.true_exp), self.camera)[0]
        slider_style = {"description_width": "110px"}
        self.sliders: dict = {}
        for k in range(min(n_id, model.n_id)):
            self.sliders[f"id_{k}"] = w.FloatSlider(0.0, min=-alpha_range, max=alpha_range, step=0.1,
                                                    description=f"pred. identity {k}", style=slider_style)
        for k in range(min(n_exp, model.n_exp)):
            self.sliders[f"exp_{k}"] = w.FloatSlider(0.0, min=-alpha_range, max=alpha_range, step=0.1,
                                                     description=f"pred. expr. {k}", style=slider_style)
        self.sliders["which"] = w.ToggleButtons(options=["ID", "ED"], value="ID", description="discriminator",
                                                style=slider_style)
        _readable(self.sliders)
        self.readout = w.HTML()
        self.image = fixed_image(self.size, self.size)
        self.widget = w.VBox([w.HBox([w.VBox([*self.sliders.values(), self.readout]), self.image],
                                     layout=w.Layout(align_items="flex-start")), live_note()])
        self.last: dict[str, torch.Tensor] = {}
        self.last_image: np.ndarray | None = None
        self.renders = 0
        for s in self.sliders.values():
            s.observe(self.update, names="value")
        self.update()

    def prediction(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The prediction's ``(alpha_id, alpha_exp)`` from the sliders (modes without a slider are 0)."""
        a_id, a_exp = self.model.zeros(1)
        for name, s in self.sliders.items():
            if name.startswith("id_"):
                a_id[0, int(name[3:])] = s.value
            elif name.startswith("exp_"):
                a_exp[0, int(name[4:])] = s.value
        return a_id, a_exp

    def update(self, change=None) -> None:
        a_id, a_exp = self.prediction()
        with torch.no_grad():
            v = disp.pred_lmk(self.model, a_id, a_exp, self.camera)[0]
            v_exp = disp.pred_lmk_exp_only(self.model, a_exp, self.camera)[0]
            v_id = disp.pred_lmk_id_only(self.model, a_id, self.camera)[0]
        which = self.sliders["which"].value
        base = v_exp if which == "ID" else v_id
        real, fake = self.U - base, v - base
        self.last = {"v": v, "v_exp": v_exp, "v_id": v_id, "real": real, "fake": fake, "base": base}
        dpi = 100
        fig = plt.figure(figsize=(self.size / dpi, self.size / dpi), dpi=dpi)
        ax = fig.add_axes([0.02, 0.1, 0.96, 0.84])
        b = base.numpy()
        ax.quiver(b[:, 0], b[:, 1], *real.numpy().T, angles="xy", scale_units="xy", scale=1, color=style.REAL,
                  width=0.004, label=f"real  U - {'v_exp' if which == 'ID' else 'v_id'}")
        ax.quiver(b[:, 0], b[:, 1], *fake.numpy().T, angles="xy", scale_units="xy", scale=1, color=style.FAKE,
                  width=0.004, label=f"fake  v - {'v_exp' if which == 'ID' else 'v_id'}")
        style.truth(ax, self.U.numpy(), size=3, label=None)
        style.prediction(ax, v.numpy(), size=3, label=None)
        ax.plot(*b.T, "k.", ms=3, label="v_exp (no identity)" if which == "ID" else "v_id (no expression)")
        _square_limits(ax, self.U.numpy(), v.numpy(), b, (b + real.numpy()), (b + fake.numpy()))
        ax.set_title(f"D_{which}: real (blue, from U) and fake (vermillion, from v)", fontsize=9)
        fig.legend(loc="lower center", ncol=3, fontsize=7, frameon=False)
        self.image.value, self.last_image = _figure_png(fig)
        gap = (real - fake).norm(dim=-1).mean().item()
        self.readout.value = (f"<small>mean |real - fake| = {gap:.4f} crop units (0 when the prediction's "
                              f"{'identity' if which == 'ID' else 'expression'} is right)</small>")
        self.renders += 1


class DiscriminatorExplorer:
    """What trained displacement discriminators answer as a prediction moves away from the truth.

    The prediction starts at the truth ``(alpha_id, alpha_exp, camera)`` of the current frame and ``prev_truth`` of
    the previous one. Sliders in [0, 1]: ``identity`` shrinks the predicted identity to the mean face
    (``alpha_id (1 - s)``), ``expression`` the predicted expression to neutral, ``motion`` the predicted motion to
    none (the previous frame's prediction moves to the current one). ``discriminators`` maps ``"id"``, ``"exp"``,
    ``"temporal"`` to modules returning logits. After every change ``last_probs`` holds ``D(fake)`` and ``D(real)``
    of each.
    """

    def __init__(self, model: MorphableModel, discriminators: dict, truth: tuple, prev_truth: tuple,
                 size: int = 440):
        w = ipywidgets()
        self.model, self.size = model, int(size)
        self.ds = {k: d.eval() for k, d in discriminators.items()}
        self.truth = tuple(t.detach().reshape(1, -1) for t in truth)
        self.prev_truth = tuple(t.detach().reshape(1, -1) for t in prev_truth)
        with torch.no_grad():
            self.U = project(model.landmarks3d(*self.truth[:2]), self.truth[2])
            self.U_prev = project(model.landmarks3d(*self.prev_truth[:2]), self.prev_truth[2])
        slider_style = {"description_width": "150px"}
        self.sliders = {
            "identity": w.FloatSlider(0.0, min=0.0, max=1.0, step=0.05, description="identity -> mean",
                                      style=slider_style),
            "expression": w.FloatSlider(0.0, min=0.0, max=1.0, step=0.05, description="expression -> neutral",
                                        style=slider_style),
            "motion": w.FloatSlider(0.0, min=0.0, max=1.0, step=0.05, description="motion -> none", style=slider_style),
        }
        _readable(self.sliders)
        self.readout = w.HTML()
        self.image = fixed_image(self.size, int(self.size * 0.55))
        self.widget = w.VBox([w.HBox([w.VBox([*self.sliders.values(), self.readout]), self.image],
                                     layout=w.Layout(align_items="flex-start")), live_note()])
        self.last_probs: dict[str, tuple[float, float]] = {}
        self.last_image: np.ndarray | None = None
        self.renders = 0
        for s in self.sliders.values():
            s.observe(self.update, names="value")
        self.update()

    def prediction(self) -> tuple[tuple, tuple]:
        """``(outputs, prev_outputs)``: G's ``(alpha_id, alpha_exp, camera)`` for I and I' from the sliders."""
        s_id, s_exp, s_mot = (self.sliders[k].value for k in ("identity", "expression", "motion"))
        a_id, a_exp, cam = self.truth
        cur = ((1 - s_id) * a_id, (1 - s_exp) * a_exp, cam)
        p_id, p_exp, p_cam = self.prev_truth
        prev = ((1 - s_id) * p_id, (1 - s_exp) * p_exp, p_cam)
        prev = tuple((1 - s_mot) * p + s_mot * c for p, c in zip(prev, cur))
        return cur, prev

    def update(self, change=None) -> None:
        cur, prev = self.prediction()
        with torch.no_grad():
            x = disp.all_displacements(self.model, cur, prev, self.U, self.U_prev)
            for k, d in self.ds.items():
                self.last_probs[k] = (float(torch.sigmoid(d(x[f"fake_{k}_disp"])).item()),
                                      float(torch.sigmoid(d(x[f"real_{k}_disp"])).item()))
        self.image.value, self.last_image = _figure_png(self.figure(x["pred_lmk"][0]))
        self.readout.value = "<small>" + ", ".join(f"D_{n}(fake) = {p[0]:.2f}" for n, p in self.last_probs.items()
                                                   ) + "</small>"
        self.renders += 1

    def figure(self, pred_lmk: torch.Tensor):
        """The picture for ``last_probs`` and the predicted landmarks ``pred_lmk`` (68, 2): landmarks on the left,
        the D(real) / D(fake) bars on the right, their legend above the bars (a bar may reach 1)."""
        dpi = 100
        fig, (ax_l, ax_b) = plt.subplots(1, 2, figsize=(self.size / dpi, self.size * 0.55 / dpi), dpi=dpi,
                                         gridspec_kw={"width_ratios": [1, 1.2]})
        style.truth(ax_l, self.U[0].numpy(), size=3)
        style.prediction(ax_l, pred_lmk.numpy(), size=3)
        _square_limits(ax_l, self.U[0].numpy(), pred_lmk.numpy(), margin=0.05)
        ax_l.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2, frameon=False)
        names = list(self.last_probs)
        pos = np.arange(len(names))
        ax_b.bar(pos - 0.18, [self.last_probs[n][1] for n in names], 0.36, color=style.REAL, label="D(real)")
        ax_b.bar(pos + 0.18, [self.last_probs[n][0] for n in names], 0.36, color=style.FAKE, hatch="//",
                 label="D(fake)")
        ax_b.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax_b.set_xticks(pos, [f"D_{n}" for n in names], fontsize=8)
        ax_b.set_ylim(0, 1)
        ax_b.set_ylabel("D(x)", fontsize=8)
        ax_b.tick_params(labelsize=7)
        # above the axes: inside them it would hide a bar that reaches 1 (D_temporal's real bar usually does)
        ax_b.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
        fig.tight_layout()
        return fig
