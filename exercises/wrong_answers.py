"""Plausible wrong answers, one or more per graded question: the grader test checks that each one FAILS the
question's tests (so the tests catch the mistakes students really make). Not handed out.

``WRONG[set][question]`` is a list of ``(what is wrong, code)``; the code redefines the question's function in a
namespace where the reference solution ran first. ``_step`` and ``_loop`` write the reference of ex06 q3 and ex07 q5
with one part changed (the mistake), so that each wrong answer differs from the solution in that part only.
"""


def _step(forward='G(torch.cat([batch["image"], batch["prev_image"]]))',
          land="torch.sqrt(((v - U) ** 2).sum(dim=(1, 2)) + 1e-12).mean()",
          zero_g_early="", d_inputs="pairs[n][0].detach(), pairs[n][1].detach()", real_label="torch.ones_like",
          fake_label="torch.zeros_like", retain="", d_opt_step="opt_d.step()", g_land="l_land",
          zero_g_late="opt_g.zero_grad()", after_g="") -> str:
    """ex06 q3: the reference iteration with one part changed (each keyword replaces one line's code)."""
    return f"""
def adversarial_step(G, Ds, opt_g, opt_d, batch, lambdas=None):
    lambdas = {{n: 0.1 for n in Ds}} if lambdas is None else lambdas
    b = batch["image"].shape[0]
    a_id, a_exp, cam = {forward}
    U, U_prev = batch["gt_lmk"], batch["prev_gt_lmk"]
    v = disp.pred_lmk(model, a_id[:b], a_exp[:b], cam[:b])
    v_prev = disp.pred_lmk(model, a_id[b:], a_exp[b:], cam[b:])
    v_exp = disp.pred_lmk_exp_only(model, a_exp[:b], cam[:b])
    v_id = disp.pred_lmk_id_only(model, a_id[:b], cam[:b])
    pairs = {{"id": (disp.real_id_disp(U, v_exp), disp.fake_id_disp(v, v_exp)),
             "exp": (disp.real_exp_disp(U, v_id), disp.fake_exp_disp(v, v_id)),
             "temporal": (disp.real_temporal_disp(U, U_prev), disp.fake_temporal_disp(v, v_prev))}}
    l_land = {land}
    logs = {{"landmark": l_land.item()}}
    {zero_g_early}
    loss_d = 0.0
    for n, d in Ds.items():
        real, fake = {d_inputs}
        r_logit, f_logit = d(real), d(fake)
        term = (F.binary_cross_entropy_with_logits(r_logit, {real_label}(r_logit))
                + F.binary_cross_entropy_with_logits(f_logit, {fake_label}(f_logit)))
        logs[f"D_{{n}}"] = term.item()
        loss_d = loss_d + lambdas[n] * term
    opt_d.zero_grad()
    loss_d.backward({retain})
    {d_opt_step}
    logs["L_D"] = loss_d.item()
    loss_g = {g_land}
    for n, d in Ds.items():
        f_logit = d(pairs[n][1])
        term = F.binary_cross_entropy_with_logits(f_logit, torch.ones_like(f_logit))
        logs[f"G_{{n}}"] = term.item()
        loss_g = loss_g + lambdas[n] * term
    {zero_g_late}
    loss_g.backward()
    opt_g.step()
    {after_g}
    logs["L_G"] = loss_g.item()
    return logs
"""


def _loop(redetect=True, box="previous", size_ref="kept", after_redetect="estimate", lost=True, outside=True) -> str:
    """ex07 q5: the reference tracking loop with one rule changed."""
    return f"""
def track(frames, detect, predict, size=SIZE):
    def estimate(frame, box):
        return from_crop(np.asarray(predict(image_to_tensor(crop_image(frame, box, size)))[0]), box)

    def side(lmk):
        x0, y0, x1, y1 = landmark_bbox(lmk)
        return max(x1 - x0, y1 - y0)

    def inside(lmk, frame):
        if not {outside}:
            return 1.0
        x0, y0, x1, y1 = landmark_bbox(lmk)
        h, w = frame.shape[:2]
        return max(0.0, min(x1, w) - max(x0, 0)) * max(0.0, min(y1, h) - max(y0, 0)) / ((x1 - x0) * (y1 - y0))

    out, kept, first, n, next_box = [], None, None, 0, None
    for t, frame in enumerate(frames):
        if kept is None:
            box0 = detect(t)
            kept = first = lmk = estimate(frame, box0)
            next_box = box_from_landmarks(lmk)
            out.append(lmk)
            continue
        box = box0 if "{box}" == "box0" else next_box
        lmk = estimate(frame, box)
        ref = first if "{size_ref}" == "first" else kept
        if {redetect} and (inside(lmk, frame) < 0.5 or not 1 / 1.35 <= side(lmk) / side(ref) <= 1.35):
            box = detect(t)
            lmk = estimate(frame, box)
            if inside(lmk, frame) >= 0.5 or not {lost}:
                n += 1
                kept = lmk
                next_box = box if "{after_redetect}" == "detector" else box_from_landmarks(lmk)
        else:
            kept = lmk
            next_box = box_from_landmarks(lmk)
        out.append(lmk)
    return np.array(out), n
"""


WRONG: dict[str, dict[str, list[tuple[str, str]]]] = {
    "ex01": {
        "q1": [
            ("each basis projected on its own (A_id^T and A_exp^T: they are not orthogonal to each other)", """
def fit_coefficients(model, shape):
    d = (shape.double() - model.mean_shape.double()).reshape(shape.shape[0], -1)
    alpha_id = (d @ model.id_basis.double()) / model.id_std.double()
    alpha_exp = (d @ model.exp_basis.double()) / model.exp_std.double()
    return alpha_id.float(), alpha_exp.float()
"""),
            ("the standard deviations left out (coefficients in metres)", """
def fit_coefficients(model, shape):
    basis = torch.cat([model.id_basis, model.exp_basis], dim=1).double()
    d = (shape.double() - model.mean_shape.double()).reshape(shape.shape[0], -1)
    both = torch.linalg.lstsq(basis, d.T).solution.T
    return both[:, :model.n_id].float(), both[:, model.n_id:].float()
"""),
            ("fitted to the 68 landmarks only (204 numbers for 228 unknowns)", """
def fit_coefficients(model, shape):
    d = (shape[:, torch.as_tensor(model.landmark_index)].double() - model.lmk_mean.double()).reshape(shape.shape[0], -1)
    basis = torch.cat([model.lmk_id, model.lmk_exp], dim=1).double()
    both = (torch.linalg.pinv(basis) @ d.T).T
    return both[:, :model.n_id].float(), both[:, model.n_id:].float()
"""),
        ],
        "q2": [
            ("the 8 numbers written column-major", """
def fit_camera(X, v):
    X1 = torch.cat([X.double(), torch.ones_like(X[..., :1], dtype=torch.float64)], dim=-1)
    return torch.linalg.lstsq(X1, v.double()).solution.reshape(-1, 8).float()
"""),
            ("no translation column (the fit forced through the origin)", """
def fit_camera(X, v):
    lin = torch.linalg.lstsq(X.double(), v.double()).solution.transpose(1, 2)
    return torch.cat([lin, torch.zeros(X.shape[0], 2, 1, dtype=torch.float64)], dim=2).reshape(-1, 8).float()
"""),
            ("the linear part fitted on centred points, t = the centroid of v", """
def fit_camera(X, v):
    Xc, vc = X.double() - X.double().mean(1, keepdim=True), v.double() - v.double().mean(1, keepdim=True)
    lin = torch.linalg.lstsq(Xc, vc).solution.transpose(1, 2)
    return torch.cat([lin, v.double().mean(1)[..., None]], dim=2).reshape(-1, 8).float()
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
            ("the mean over the batch forgotten (gradient of the sum)", """
def landmark_loss_grad(pred, gt):
    r = pred - gt
    n = r.flatten(1).norm(dim=1)[:, None, None]
    return torch.where(n > 0, r / n.clamp_min(1e-300), torch.zeros_like(r))
"""),
            ("the gradient of the squared error", """
def landmark_loss_grad(pred, gt):
    return 2 * (pred - gt) / pred.shape[0]
"""),
            ("the gradient of the per-landmark reading", """
def landmark_loss_grad(pred, gt):
    r = pred - gt
    n = r.norm(dim=-1, keepdim=True)
    return torch.where(n > 0, r / n.clamp_min(1e-300), torch.zeros_like(r)) / (pred.shape[0] * pred.shape[1])
"""),
            ("no care for an exact prediction (0 / 0)", """
def landmark_loss_grad(pred, gt):
    r = pred - gt
    return r / r.flatten(1).norm(dim=1)[:, None, None] / pred.shape[0]
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
            ("the nearest pose's f and R used (right only when the camera is a pose)", """
def fake_displacements(model, alpha_id, alpha_exp, camera):
    from tdd_lite.camera import pose_from_camera
    f, R, _ = pose_from_camera(camera)
    flip = torch.tensor([1.0, -1.0])
    id_off = (alpha_id @ model.lmk_id.T).reshape(-1, 68, 3)
    exp_off = (alpha_exp @ model.lmk_exp.T).reshape(-1, 68, 3)
    f = f.reshape(-1, 1, 1)
    return f * (id_off @ R.transpose(1, 2))[..., :2] * flip, f * (exp_off @ R.transpose(1, 2))[..., :2] * flip
"""),
            ("the translation added (projected offsets as if they were points)", """
def fake_displacements(model, alpha_id, alpha_exp, camera):
    m = camera.reshape(-1, 2, 4)
    id_off = (alpha_id @ model.lmk_id.T).reshape(-1, 68, 3)
    exp_off = (alpha_exp @ model.lmk_exp.T).reshape(-1, 68, 3)
    return (id_off @ m[:, :, :3].transpose(1, 2) + m[:, None, :, 3],
            exp_off @ m[:, :, :3].transpose(1, 2) + m[:, None, :, 3])
"""),
            ("the two terms swapped (x_z_ID from the expression)", """
def fake_displacements(model, alpha_id, alpha_exp, camera):
    m = camera.reshape(-1, 2, 4)[:, :, :3].transpose(1, 2)
    return (alpha_exp @ model.lmk_exp.T).reshape(-1, 68, 3) @ m, (alpha_id @ model.lmk_id.T).reshape(-1, 68, 3) @ m
"""),
        ],
        "q2": [
            ("the camera's rotation ignored (x and y of the 3D offsets, scaled)", """
def expression_from_displacement(model, x_z_ED, camera):
    m = camera.double().reshape(-1, 2, 4)[:, :, :3]
    f = m[:, 0].norm(dim=-1)
    flip_y = torch.tensor([1.0, -1.0], dtype=torch.float64)
    modes = model.lmk_exp.double().T.reshape(model.n_exp, 68, 3)[..., :2] * flip_y
    design = torch.einsum("b,mld->bldm", f, modes).reshape(-1, 136, model.n_exp)
    return torch.linalg.lstsq(design, x_z_ED.double().reshape(-1, 136, 1)).solution[..., 0].float()
"""),
            ("the standard deviations divided out twice (coefficients in other units)", """
def expression_from_displacement(model, x_z_ED, camera):
    m = camera.double().reshape(-1, 2, 4)[:, :, :3]
    modes = model.lmk_exp.double().T.reshape(model.n_exp, 68, 3)
    design = torch.einsum("mlc,bdc->bldm", modes, m).reshape(-1, 136, model.n_exp)
    sol = torch.linalg.lstsq(design, x_z_ED.double().reshape(-1, 136, 1)).solution[..., 0]
    return (sol / model.exp_std.double()).float()
"""),
            ("one camera (the first) used for the whole batch", """
def expression_from_displacement(model, x_z_ED, camera):
    m = camera.double().reshape(-1, 2, 4)[:1, :, :3].expand(camera.shape[0], 2, 3)
    modes = model.lmk_exp.double().T.reshape(model.n_exp, 68, 3)
    design = torch.einsum("mlc,bdc->bldm", modes, m).reshape(-1, 136, model.n_exp)
    return torch.linalg.lstsq(design, x_z_ED.double().reshape(-1, 136, 1)).solution[..., 0].float()
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
            ("one lambda for all: the mean ratio (L_G - L_land) / sum of the G terms", """
def recover_lambdas(records):
    names = [n for n in ("id", "exp", "temporal") if f"G_{n}" in records[0]]
    lam = np.mean([(r["L_G"] - r["landmark"]) / sum(r[f"G_{n}"] for n in names) for r in records])
    return {n: float(lam) for n in names}
"""),
            ("L_land not subtracted (L_G fitted by the adversarial terms alone)", """
def recover_lambdas(records):
    names = [n for n in ("id", "exp", "temporal") if f"G_{n}" in records[0]]
    A = np.array([[r[f"G_{n}"] for n in names] for r in records])
    lam = np.linalg.lstsq(A, np.array([r["L_G"] for r in records]), rcond=None)[0]
    return {n: float(v) for n, v in zip(names, lam)}
"""),
            ("three discriminators assumed (an ablation row has fewer)", """
def recover_lambdas(records):
    names = ("id", "exp", "temporal")
    A = np.array([[r.get(f"G_{n}", 0.0) for n in names] for r in records])
    y = np.array([r["L_G"] - r["landmark"] for r in records])
    return {n: float(v) for n, v in zip(names, np.linalg.lstsq(A, y, rcond=None)[0])}
"""),
        ],
        "q2": [
            ("D's loss without its fake term (ln 2 at chance instead of ln 4)", """
def losses_at(p_real, p_fake, l_land, lambdas):
    nll = lambda p: math.inf if p <= 0 else -math.log(p)
    lam = sum(lambdas.values())
    return float(lam * nll(p_real)), float(l_land + lam * nll(p_fake))
"""),
            ("erratum 1 ignored: -ln D(real) - ln D(fake)", """
def losses_at(p_real, p_fake, l_land, lambdas):
    nll = lambda p: math.inf if p <= 0 else -math.log(p)
    lam = sum(lambdas.values())
    return float(lam * (nll(p_real) + nll(p_fake))), float(l_land + lam * nll(p_fake))
"""),
            ("lambda applied to L_land too", """
def losses_at(p_real, p_fake, l_land, lambdas):
    nll = lambda p: math.inf if p <= 0 else -math.log(p)
    lam = sum(lambdas.values())
    return float(lam * (nll(p_real) + nll(1 - p_fake))), float(lam * (l_land + nll(p_fake)))
"""),
            ("the saturating G term log(1 - D(fake)) (erratum 2's other reading)", """
def losses_at(p_real, p_fake, l_land, lambdas):
    nll = lambda p: math.inf if p <= 0 else -math.log(p)
    lam = sum(lambdas.values())
    return float(lam * (nll(p_real) + nll(1 - p_fake))), float(l_land - lam * nll(1 - p_fake))
"""),
        ],
        "q3": [
            ("the D step without detach: its gradient reaches G (graph kept, G's gradients zeroed only once)",
             _step(d_inputs="pairs[n][0], pairs[n][1]", retain="retain_graph=True", zero_g_early="opt_g.zero_grad()",
                   zero_g_late="")),
            ("labels swapped in the D step (real = 0, fake = 1)",
             _step(real_label="torch.zeros_like", fake_label="torch.ones_like")),
            ("lambda applied to L_land too", _step(g_land="0.1 * l_land")),
            ("G run twice, on I and on I' separately (BatchNorm over other batches)",
             _step(forward='[torch.cat(p) for p in zip(G(batch["image"]), G(batch["prev_image"]))]')),
            ("the G step judged by the Ds before their update (opt_d stepped after the G step)",
             _step(d_opt_step="", after_g="opt_d.step()")),
            ("the Ds trained again in the G step (their weights not frozen)",
             _step(after_g="opt_d.step()")),
            ("eq. 1 as the mean distance per landmark", _step(
                land="torch.sqrt(((v - U) ** 2).sum(-1) + 1e-12).mean()")),
        ],
    },
    "ex07": {
        "q1": [
            ("first differences (velocity) instead of second differences", """
def jitter_ratio(pred, gt):
    p, g = np.asarray(pred, dtype=float), np.asarray(gt, dtype=float)
    return float(np.linalg.norm(np.diff(p, axis=0), axis=-1).sum() / np.linalg.norm(np.diff(g, axis=0), axis=-1).sum())
"""),
            ("|x| + |y| per landmark instead of the Euclidean length", """
def jitter_ratio(pred, gt):
    p, g = np.asarray(pred, dtype=float), np.asarray(gt, dtype=float)
    return float(np.abs(p[2:] - 2 * p[1:-1] + p[:-2]).sum() / np.abs(g[2:] - 2 * g[1:-1] + g[:-2]).sum())
"""),
            ("squared lengths (an energy ratio)", """
def jitter_ratio(pred, gt):
    p, g = np.asarray(pred, dtype=float), np.asarray(gt, dtype=float)
    return float(((p[2:] - 2 * p[1:-1] + p[:-2]) ** 2).sum() / ((g[2:] - 2 * g[1:-1] + g[:-2]) ** 2).sum())
"""),
            ("the mean of per-frame ratios", """
def jitter_ratio(pred, gt):
    p, g = np.asarray(pred, dtype=float), np.asarray(gt, dtype=float)
    ap = np.linalg.norm(p[2:] - 2 * p[1:-1] + p[:-2], axis=-1).sum(-1)
    ag = np.linalg.norm(g[2:] - 2 * g[1:-1] + g[:-2], axis=-1).sum(-1)
    return float(np.mean(ap / ag))
"""),
        ],
        "q2": [
            ("no clamp at 0 (two negative overlap widths multiply to a positive area)", """
def box_iou(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    inter = (min(a[2], b[2]) - max(a[0], b[0])) * (min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)
"""),
            ("intersection over the sum of the areas", """
def box_iou(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])))
"""),
            ("intersection over the smaller box", """
def box_iou(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return float(inter / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])))
"""),
            ("boxes read as (x, y, width, height)", """
def box_iou(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a = np.array([a[0], a[1], a[0] + a[2], a[1] + a[3]])
    b = np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]])
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))
"""),
        ],
        "q3": [
            ("the sign convention flipped (v_pred[t] against v_true[t + k])", """
def lag(pred, gt, max_shift=5):
    vp = np.diff(np.asarray(pred, dtype=float).mean(axis=1), axis=0)
    vg = np.diff(np.asarray(gt, dtype=float).mean(axis=1), axis=0)
    n, best_k, best_r = len(vp), 0, -np.inf
    for k in sorted(range(-max_shift, max_shift + 1), key=abs):
        i = np.arange(max(-k, 0), min(n, n - k))
        x, y = vp[i] - vp[i].mean(0), vg[i + k] - vg[i + k].mean(0)
        r = np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y))
        if r > best_r:
            best_k, best_r = k, r
    return int(best_k)
"""),
            ("positions correlated instead of velocities", """
def lag(pred, gt, max_shift=5):
    cp = np.asarray(pred, dtype=float).mean(axis=1)
    cg = np.asarray(gt, dtype=float).mean(axis=1)
    n, best_k, best_r = len(cp), 0, -np.inf
    for k in sorted(range(-max_shift, max_shift + 1), key=abs):
        i = np.arange(max(k, 0), min(n, n + k))
        x, y = cp[i] - cp[i].mean(0), cg[i - k] - cg[i - k].mean(0)
        r = np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y))
        if r > best_r:
            best_k, best_r = k, r
    return int(best_k)
"""),
            ("velocities not centred (a cosine, not a correlation)", """
def lag(pred, gt, max_shift=5):
    vp = np.diff(np.asarray(pred, dtype=float).mean(axis=1), axis=0)
    vg = np.diff(np.asarray(gt, dtype=float).mean(axis=1), axis=0)
    n, best_k, best_r = len(vp), 0, -np.inf
    for k in sorted(range(-max_shift, max_shift + 1), key=abs):
        i = np.arange(max(k, 0), min(n, n + k))
        x, y = vp[i], vg[i - k]
        r = np.sum(x * y) / np.sqrt(np.sum(x * x) * np.sum(y * y))
        if r > best_r:
            best_k, best_r = k, r
    return int(best_k)
"""),
            ("the largest dot product instead of the correlation (not normalised)", """
def lag(pred, gt, max_shift=5):
    vp = np.diff(np.asarray(pred, dtype=float).mean(axis=1), axis=0)
    vg = np.diff(np.asarray(gt, dtype=float).mean(axis=1), axis=0)
    n, best_k, best_r = len(vp), 0, -np.inf
    for k in sorted(range(-max_shift, max_shift + 1), key=abs):
        i = np.arange(max(k, 0), min(n, n + k))
        r = np.sum((vp[i] - vp[i].mean(0)) * (vg[i - k] - vg[i - k].mean(0)))
        if r > best_r:
            best_k, best_r = k, r
    return int(best_k)
"""),
        ],
        "q4": [
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
        "q5": [
            ("no re-detection: the crop always follows the previous estimate", _loop(redetect=False)),
            ("cropping around the first box forever", _loop(box="box0")),
            ("each size compared with the first frame's estimate, not the last one kept", _loop(size_ref="first")),
            ("after a re-detection the next crop is the detector's box, not the re-estimate's",
             _loop(after_redetect="detector")),
            ("no 'lost' frames: every re-detection counted and kept, even out of the frame", _loop(lost=False)),
            ("no 'outside' test (the size jump only)", _loop(outside=False)),
        ],
    },
    "ex08": {
        "q1": [
            ("unpaired (Welch) interval: the two groups' own spreads, the pairing by seed ignored", """
def paired_interval(config, baseline):
    a, b = np.asarray(config, dtype=float), np.asarray(baseline, dtype=float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.975, dof) * np.sqrt(va + vb)
    m = a.mean() - b.mean()
    return float(m), float(m - half), float(m + half)
"""),
            ("the normal quantile 1.96 instead of t with n - 1 degrees of freedom", """
def paired_interval(config, baseline):
    d = np.asarray(config, dtype=float) - np.asarray(baseline, dtype=float)
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
"""),
            ("the population standard deviation (ddof=0)", """
def paired_interval(config, baseline):
    d = np.asarray(config, dtype=float) - np.asarray(baseline, dtype=float)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std() / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
"""),
            ("n degrees of freedom instead of n - 1", """
def paired_interval(config, baseline):
    d = np.asarray(config, dtype=float) - np.asarray(baseline, dtype=float)
    half = stats.t.ppf(0.975, len(d)) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
"""),
            ("the spread of the differences, not of their mean (no division by sqrt(n))", """
def paired_interval(config, baseline):
    d = np.asarray(config, dtype=float) - np.asarray(baseline, dtype=float)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1)
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
"""),
            ("the 95% quantile (a 90% two-sided interval)", """
def paired_interval(config, baseline):
    d = np.asarray(config, dtype=float) - np.asarray(baseline, dtype=float)
    half = stats.t.ppf(0.95, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
"""),
        ],
        "q2": [
            ("one paired comparison: the configuration with only d on minus 'Without all'", """
def main_effect(nme, d):
    only = tuple(i == d for i in range(3))
    return np.asarray(nme[only], dtype=float) - np.asarray(nme[(False, False, False)], dtype=float)
"""),
            ("the sign flipped (off minus on)", """
def main_effect(nme, d):
    on = [np.asarray(v, dtype=float) for k, v in nme.items() if k[d]]
    off = [np.asarray(v, dtype=float) for k, v in nme.items() if not k[d]]
    return np.mean(off, axis=0) - np.mean(on, axis=0)
"""),
            ("averaged over the seeds too (one number, not one per seed)", """
def main_effect(nme, d):
    on = [np.asarray(v, dtype=float) for k, v in nme.items() if k[d]]
    off = [np.asarray(v, dtype=float) for k, v in nme.items() if not k[d]]
    return np.asarray(np.mean(on) - np.mean(off))
"""),
            ("the full configuration minus the 4 rows without d (the other discriminators' settings not balanced)", """
def main_effect(nme, d):
    off = [np.asarray(v, dtype=float) for k, v in nme.items() if not k[d]]
    return np.asarray(nme[(True, True, True)], dtype=float) - np.mean(off, axis=0)
"""),
            ("the dict's values assumed to be in CONFIGS order (the keys not read)", """
def main_effect(nme, d):
    vals = [np.asarray(v, dtype=float) for v in nme.values()]
    on = [v for k, v in zip(CONFIGS, vals) if k[d]]
    off = [v for k, v in zip(CONFIGS, vals) if not k[d]]
    return np.mean(on, axis=0) - np.mean(off, axis=0)
"""),
        ],
        "q3": [
            ("zero padding at the ends (np.convolve-style: the end frames divided by 3)", """
def centred_average(stream):
    x = np.asarray(stream, dtype=float)
    pad = np.concatenate([np.zeros_like(x[:1]), x, np.zeros_like(x[:1])])
    return (pad[:-2] + pad[1:-1] + pad[2:]) / 3
"""),
            ("a causal average of frames t-2 .. t (no look-ahead)", """
def centred_average(stream):
    x = np.asarray(stream, dtype=float)
    return np.stack([x[max(t - 2, 0):t + 1].mean(axis=0) for t in range(len(x))])
"""),
            ("the end frames repeated (np.pad mode='edge': frame 0 counted twice)", """
def centred_average(stream):
    x = np.asarray(stream, dtype=float)
    pad = np.concatenate([x[:1], x, x[-1:]])
    return (pad[:-2] + pad[1:-1] + pad[2:]) / 3
"""),
            ("a circular window (np.roll: frame 0 averaged with the last frame)", """
def centred_average(stream):
    x = np.asarray(stream, dtype=float)
    return (np.roll(x, 1, axis=0) + x + np.roll(x, -1, axis=0)) / 3
"""),
            ("averaged in place (frame t-1 already smoothed when frame t is computed)", """
def centred_average(stream):
    x = np.array(stream, dtype=float)
    for t in range(len(x)):
        x[t] = x[max(t - 1, 0):t + 2].mean(axis=0)
    return x
"""),
        ],
    },
}
