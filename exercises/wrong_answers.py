"""Plausible wrong answers, one or more per graded question: the grader test checks that each one FAILS the
question's tests (so the tests catch the mistakes students really make). Not handed out.

``WRONG[set][question]`` is a list of ``(what is wrong, code)``; the code redefines the question's function in a
namespace where the reference solution ran first.
"""

WRONG: dict[str, dict[str, list[tuple[str, str]]]] = {
    "ex01": {
        "q1": [
            ("alpha taken as raw coefficients (no standard deviations)", """
def landmarks_3d(model, alpha_id, alpha_exp):
    b = alpha_id.shape[0]
    flat = model.mean_shape.reshape(1, -1) + alpha_id @ model.id_basis.T + alpha_exp @ model.exp_basis.T
    return flat.reshape(b, -1, 3)[:, torch.as_tensor(model.landmark_index)]
"""),
            ("the (3N,) vector reshaped as (3, N) instead of (N, 3)", """
def landmarks_3d(model, alpha_id, alpha_exp):
    b = alpha_id.shape[0]
    flat = (model.mean_shape.reshape(1, -1) + (alpha_id * model.id_std) @ model.id_basis.T
            + (alpha_exp * model.exp_std) @ model.exp_basis.T)
    return flat.reshape(b, 3, -1).transpose(1, 2)[:, torch.as_tensor(model.landmark_index)]
"""),
        ],
        "q2": [
            ("the 8 numbers read column-major", """
def project_points(X, camera):
    m = camera.reshape(-1, 4, 2).transpose(1, 2)
    return X @ m[:, :, :3].transpose(1, 2) + m[:, None, :, 3]
"""),
            ("translation forgotten", """
def project_points(X, camera):
    m = camera.reshape(-1, 2, 4)
    return X @ m[:, :, :3].transpose(1, 2)
"""),
        ],
        "q3": [
            ("f read off one matrix entry (right only for a frontal camera)", """
def scale_and_translation(camera):
    m = camera.reshape(-1, 2, 4)
    return m[:, 0, 0], m[:, :, 3]
"""),
        ],
    },
    "ex02": {
        "q1": [
            ("normalised by the box diagonal", """
def nme_bbox(pred, gt):
    w, h = np.ptp(gt[:, 0]), np.ptp(gt[:, 1])
    return float(np.linalg.norm(pred - gt, axis=1).mean() / np.hypot(w, h))
"""),
            ("RMS of the coordinates instead of the mean point distance", """
def nme_bbox(pred, gt):
    w, h = np.ptp(gt[:, 0]), np.ptp(gt[:, 1])
    return float(np.sqrt(((pred - gt) ** 2).mean()) / np.sqrt(w * h))
"""),
            ("the prediction's box as the normaliser", """
def nme_bbox(pred, gt):
    w, h = np.ptp(pred[:, 0]), np.ptp(pred[:, 1])
    return float(np.linalg.norm(pred - gt, axis=1).mean() / np.sqrt(w * h))
"""),
        ],
        "q2": [
            ("1-based iBUG numbers used as 0-based rows", """
def nme_interocular(pred, gt):
    return float(np.linalg.norm(pred - gt, axis=1).mean() / np.linalg.norm(gt[37] - gt[46]))
"""),
        ],
        "q3": [
            ("divided by the far corner instead of the box size", """
def to_crop(points, box):
    return (np.asarray(points) - box[:2]) / np.asarray(box[2:])
"""),
            ("x and y of the box swapped", """
def to_crop(points, box):
    return (np.asarray(points) - box[[1, 0]]) / (box[[3, 2]] - box[[1, 0]])
"""),
        ],
    },
    "ex03": {
        "q1": [
            ("the per-landmark reading (mean distance)", """
def landmark_loss(pred, gt):
    return (pred - gt).norm(dim=-1).mean()
"""),
            ("squared error (no square root)", """
def landmark_loss(pred, gt):
    return ((pred - gt) ** 2).sum(dim=(1, 2)).mean()
"""),
        ],
        "q2": [
            ("both parts floored (do not add up)", """
def split_sizes(n_feature, n_3dmm, n_camera):
    return n_feature * n_3dmm // (n_3dmm + n_camera), n_feature * n_camera // (n_3dmm + n_camera)
"""),
            ("the paper's numbers hard-coded", """
def split_sizes(n_feature, n_3dmm, n_camera):
    return 990, 35
"""),
        ],
    },
    "ex04": {
        "q1": [
            ("v_exp built with the identity too (the full face)", """
def identity_displacements(model, U, alpha_id, alpha_exp, camera):
    v = project(model.landmarks3d(alpha_id, alpha_exp), camera)
    return U - v, v - v
"""),
            ("v_id used in place of v_exp", """
def identity_displacements(model, U, alpha_id, alpha_exp, camera):
    v = project(model.landmarks3d(alpha_id, alpha_exp), camera)
    v_id = project(model.landmarks3d(alpha_id, None), camera)
    return U - v_id, v - v_id
"""),
        ],
        "q2": [
            ("the identity displacements returned", """
def expression_displacements(model, U, alpha_id, alpha_exp, camera):
    v = project(model.landmarks3d(alpha_id, alpha_exp), camera)
    v_exp = project(model.landmarks3d(None, alpha_exp), camera)
    return U - v_exp, v - v_exp
"""),
        ],
        "q3": [
            ("the two frames' crop coordinates subtracted as they are (erratum 7 ignored)", """
def temporal_displacement(U, box, U_prev, box_prev):
    return U - U_prev
"""),
            ("boxes swapped when re-expressing", """
def temporal_displacement(U, box, U_prev, box_prev):
    lo, hi = box[:, None, :2], box[:, None, 2:]
    pixels = lo + U_prev * (hi - lo)
    lo, hi = box_prev[:, None, :2], box_prev[:, None, 2:]
    return U - (pixels - lo) / (hi - lo)
"""),
        ],
    },
    "ex05": {
        "q1": [
            ("eq. 6 as printed, negated (D calls everything real)", """
def d_loss(real_logits, fake_logits):
    return -(F.logsigmoid(real_logits).mean() + F.logsigmoid(fake_logits).mean())
"""),
            ("log of a sigmoid (not stable)", """
def d_loss(real_logits, fake_logits):
    return -(torch.log(torch.sigmoid(real_logits)).mean() + torch.log(1 - torch.sigmoid(fake_logits)).mean())
"""),
        ],
        "q2": [
            ("eq. 16 as printed (G helps D)", """
def g_adv_loss(fake_logits):
    return F.logsigmoid(fake_logits).mean()
"""),
            ("the saturating form log(1 - D(x_z))", """
def g_adv_loss(fake_logits):
    return -F.softplus(fake_logits).mean()
"""),
        ],
        "q3": [
            ("dropout on FC4 too, as Table 1 prints it", """
def make_discriminator(p=0.3):
    layers, sizes = [], [136, 256, 128, 64]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(p)]
    return nn.Sequential(*layers, nn.Linear(64, 1), nn.Dropout(p))
"""),
            ("a sigmoid at the end (probabilities, not logits)", """
def make_discriminator(p=0.3):
    layers, sizes = [], [136, 256, 128, 64]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(p)]
    return nn.Sequential(*layers, nn.Linear(64, 1), nn.Sigmoid())
"""),
        ],
    },
    "ex06": {
        "q1": [
            ("linear decay", """
def lr_at(step, total, lr=1e-3, lr_final=1e-5):
    return lr + (lr_final - lr) * min(step, total) / total
"""),
            ("exponential decay (the other reading, not this schedule)", """
def lr_at(step, total, lr=1e-3, lr_final=1e-5):
    return lr * (lr_final / lr) ** (min(step, total) / total)
"""),
        ],
        "q2": [
            ("lambda applied to the landmark loss too", """
def generator_total_loss(l_land, adv_terms, lam=0.1):
    return lam * (l_land + sum(adv_terms.values()))
"""),
            ("lambda hard-coded", """
def generator_total_loss(l_land, adv_terms, lam=0.1):
    return l_land + 0.1 * sum(adv_terms.values())
"""),
        ],
        "q3": [
            ("speed from the previous RAW value (MediaPipe's variant, not the paper's)", """
def one_euro(stream, fps=30.0, min_cutoff=1.0, beta=0.0, d_cutoff=1.0):
    x = np.asarray(stream, dtype=float)
    alpha = lambda fc: 1.0 / (1.0 + fps / (2.0 * np.pi * fc))
    out = np.empty_like(x)
    out[0], y, edx = x[0], x[0], np.zeros_like(x[0])
    for t in range(1, len(x)):
        dx = (x[t] - x[t - 1]) * fps
        edx = alpha(d_cutoff) * dx + (1 - alpha(d_cutoff)) * edx
        a = alpha(min_cutoff + beta * np.abs(edx))
        y = a * x[t] + (1 - a) * y
        out[t] = y
    return out
"""),
            ("alpha inverted (tau / (tau + Te))", """
def one_euro(stream, fps=30.0, min_cutoff=1.0, beta=0.0, d_cutoff=1.0):
    x = np.asarray(stream, dtype=float)
    alpha = lambda fc: 1.0 - 1.0 / (1.0 + fps / (2.0 * np.pi * fc))
    out = np.empty_like(x)
    out[0], y, edx = x[0], x[0], np.zeros_like(x[0])
    for t in range(1, len(x)):
        dx = (x[t] - y) * fps
        edx = alpha(d_cutoff) * dx + (1 - alpha(d_cutoff)) * edx
        a = alpha(min_cutoff + beta * np.abs(edx))
        y = a * x[t] + (1 - a) * y
        out[t] = y
    return out
"""),
            ("a fixed exponential smoother (beta ignored)", """
def one_euro(stream, fps=30.0, min_cutoff=1.0, beta=0.0, d_cutoff=1.0):
    x = np.asarray(stream, dtype=float)
    a = 1.0 / (1.0 + fps / (2.0 * np.pi * min_cutoff))
    out = np.empty_like(x)
    out[0] = x[0]
    for t in range(1, len(x)):
        out[t] = a * x[t] + (1 - a) * out[t - 1]
    return out
"""),
        ],
    },
}
