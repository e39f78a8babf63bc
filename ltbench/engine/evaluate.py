"""End-of-job evaluation: accuracy per class and per group under each attack, in large batches.

:func:`run_evaluation` is what every job (and ``ltbench eval``) runs. For each named attack (see
:mod:`ltbench.attacks.factory`) it predicts the whole test set batch by batch — the test set stays
uint8 on the device until a batch is used — and summarises the predictions with
:func:`ltbench.metrics.summarize` plus the confusion counts of the adversarial predictions. It
returns the part of ``result.json`` that evaluation owns::

    {"metrics":    {attack: {"overall", "per_class", "head", "medium", "tail", "worst",
                             "per_class_std", "n", "confusion", "attack", "seconds", …}},
     "checks":     {"eps", "n", "n_per_class", "seed", "accuracy": {attack: overall}},
     "warnings":   [str, …],
     "evaluation": {"eps", "step", "batch_size", "seed", "device", "attacks", "autoattack": {…}}}

AutoAttack runs on the full test set, or — with ``aa_n_per_class`` — on a fixed, balanced, seeded
subset of N images per class; its record says which (``subset``, ``n_per_class``,
``subset_seed``) and carries ``same_subset``: the other attacks' accuracies on those images. It is
run on fixed chunks whose predictions are recorded in ``<state_dir>/aa_state.json`` after each
chunk, so a killed evaluation resumes where it stopped with the same result.

The gradient-masking checks (:func:`ltbench.metrics.masking_warnings`) run FGSM, PGD at ε/2 and
the logit-scaled PGD on a fixed balanced subset (1000 images by default, about a tenth of the cost
of one PGD-20 pass over a 10 000-image test set) and compare them with the main attacks on the
same images.
"""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ltbench.attacks import AutoAttack, autocast_for, build_attack, parse_attack_name, predict_labels
from ltbench.errors import LtbenchError
from ltbench.io import read_json_object, write_json
from ltbench.metrics import confusion_counts, masking_warnings, summarize
from ltbench.study_folder import state_file_name

Progress = Callable[[str], None]
CPU_BATCH = 250  # fastest measured on 2 CPU cores for the small CNN
CUDA_BATCH = 1024  # bf16 autocast on a GPU: large batches keep it busy
CHECK_SAMPLES = 1000  # size of the gradient-masking check subset
AA_CHUNK_BATCHES = 4  # AutoAttack progress is saved every 4 batches


def eval_batch_size(requested: Optional[int], device: torch.device) -> int:
    """The evaluation batch: ``requested``, except that the CPU default (250) becomes 1024 on CUDA."""
    if device.type == "cuda" and requested in (None, CPU_BATCH):
        return CUDA_BATCH
    return int(requested or CPU_BATCH)


def balanced_subset(y: torch.Tensor, n_per_class: int, seed: int, upsample: bool = False) -> torch.Tensor:
    """Sorted indices of ``n_per_class`` images per class (all of a smaller class), chosen with a
    seeded generator: the same labels, N and seed always give the same subset. ``upsample``: a
    smaller class is repeated (each of its images ⌊N/k⌋ or ⌈N/k⌉ times) up to ``n_per_class``."""
    gen = torch.Generator().manual_seed(int(seed))
    y = y.cpu()
    picked = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        if upsample and len(idx) < n_per_class:
            extra = idx[torch.randperm(len(idx), generator=gen)[:n_per_class % len(idx)]]
            picked.append(torch.cat([idx.repeat(n_per_class // len(idx)), extra]))
        else:
            picked.append(idx[torch.randperm(len(idx), generator=gen)[:n_per_class]])
    return torch.cat(picked).sort().values


def job_test_set(x: torch.Tensor, y: torch.Tensor, n_per_class: Optional[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A job's test set: all of it, or with ``n_per_class`` (a job's ``test_per_class``, for smoke
    runs) a balanced, seeded subset of that many images per class, the same for every attack."""
    if n_per_class is None:
        return x, y
    idx = balanced_subset(y, int(n_per_class), seed)
    return x[idx], y[idx]


def model_fingerprint(model: nn.Module) -> str:
    """SHA-1 of the model's state (parameters and buffers): ties a saved AutoAttack state to it."""
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _digest(idx: torch.Tensor) -> str:
    return hashlib.sha1(idx.cpu().to(torch.int64).numpy().tobytes()).hexdigest()


def _batch(x_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x_u8.to(device, non_blocking=True).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last)


def predict(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, attack, device, batch_size: int,
            progress: Optional[Progress] = None, label: str = "") -> torch.Tensor:
    """Predicted labels on (attacked) inputs, batch by batch; returned on the CPU.

    The labels stay on the device until the end: the loop never waits for the host.
    """
    preds = []
    was_training = model.training
    model.eval()
    n_batches = math.ceil(len(x_u8) / batch_size)
    try:
        for b, i in enumerate(range(0, len(x_u8), batch_size)):
            xb = _batch(x_u8[i:i + batch_size], device)
            yb = y[i:i + batch_size].to(device, non_blocking=True)
            if attack is not None:
                xb = attack(model, xb, yb)
            preds.append(predict_labels(model, xb))
            if progress and (b % 10 == 0 or b == n_batches - 1):
                progress(f"eval {label} batch {b + 1}/{n_batches}")
    finally:
        model.train(was_training)
    return torch.cat(preds).cpu() if preds else torch.empty(0, dtype=torch.long)


def predict_resumable(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, attack, device, batch_size: int,
                      state_path: Optional[Path], key: dict, progress: Optional[Progress] = None,
                      label: str = "") -> tuple[torch.Tensor, list[str]]:
    """:func:`predict` in chunks of :data:`AA_CHUNK_BATCHES` batches, recording the predictions
    (and the attack's ``warnings``, if it has any) in ``state_path`` after each chunk; a state with
    the same ``key`` is resumed from. Returns (predictions, warnings of all chunks)."""
    n = len(y)
    preds: list[int] = []
    earlier: list[str] = []  # warnings of the chunks done before a restart
    if state_path is not None and state_path.exists():
        saved = read_json_object(state_path)  # None when damaged: the attack starts from the beginning
        if saved is not None and saved.get("key") == key and _valid_preds(saved.get("pred"), n) \
                and isinstance(saved.get("warnings", []), list):
            preds, earlier = list(saved["pred"]), [str(w) for w in saved.get("warnings", [])]

    def warnings() -> list[str]:
        return earlier + [w for w in getattr(attack, "warnings", []) if w not in earlier]

    chunk = batch_size * AA_CHUNK_BATCHES
    while len(preds) < n:
        i = len(preds)
        if progress:
            progress(f"eval {label} {i}/{n}")
        part = predict(model, x_u8[i:i + chunk], y[i:i + chunk], attack, device, batch_size)
        preds.extend(part.tolist())
        if state_path is not None:
            write_json(state_path, {"key": key, "done": len(preds), "n": n, "pred": preds, "warnings": warnings()})
    return torch.tensor(preds, dtype=torch.long), warnings()


def check_outputs(model: nn.Module, x_u8: torch.Tensor, num_classes: int, device, batch_size: int) -> Optional[str]:
    """One clean pass over the test images before any attack. A model whose logits are not one row
    of ``num_classes`` per image is a one-line error naming both numbers; logits that are NaN or
    infinite are a warning to record (their arg-max is not a prediction, so the accuracies are not
    results). The model's mode is restored; no random number is drawn."""
    was_training = model.training
    model.eval()
    bad = torch.zeros((), dtype=torch.long, device=device)
    try:
        with torch.no_grad():
            for i in range(0, len(x_u8), batch_size):
                xb = _batch(x_u8[i:i + batch_size], device)
                with autocast_for(xb.device):
                    logits = model(xb)
                if logits.ndim == 2 and len(logits) == len(xb) and logits.shape[1] != num_classes:
                    raise LtbenchError(f"the model has {logits.shape[1]} outputs but the dataset has {num_classes} "
                                       f"classes (it needs one logit per class)")
                if logits.shape != (len(xb), num_classes):
                    raise LtbenchError(f"the model's output for {len(xb)} images has shape {tuple(logits.shape)}, "
                                       f"not ({len(xb)}, {num_classes}): one logit per class of the dataset")
                bad += (~torch.isfinite(logits)).any(1).sum()
    finally:
        model.train(was_training)
    n_bad = int(bad)
    if not n_bad:
        return None
    return (f"the model's outputs are NaN or infinite on {n_bad} of {len(x_u8)} test images: the accuracies "
            f"on them are not measurements")


def _valid_preds(pred, n: int) -> bool:
    """A saved list of predicted labels: at most ``n`` non-negative integers."""
    return isinstance(pred, list) and len(pred) <= n and all(
        isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in pred)


def _record(pred: torch.Tensor, y: torch.Tensor, class_counts: list[int]) -> dict:
    rec = summarize(pred == y, y, class_counts)
    rec["confusion"] = confusion_counts(pred, y, len(class_counts))
    return rec


def run_evaluation(model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, class_counts: list[int],
                   attacks: Sequence[str], *, eps: float, step: float, device: torch.device,
                   batch_size: Optional[int] = None, seed: int = 0, aa_n_per_class: Optional[int] = None,
                   state_dir: Optional[Path] = None, checks: bool = True, check_samples: int = CHECK_SAMPLES,
                   progress: Optional[Progress] = None) -> dict:
    """Evaluate ``model`` under each of ``attacks``; returns the evaluation part of ``result.json``.

    ``x_test`` is uint8 N×C×H×W, ``y_test`` int64; ``class_counts`` are the training counts
    (they define head / medium / tail). Each attack starts from ``torch.manual_seed(seed)`` inside
    a forked random state, so results are reproducible and the caller's random state is untouched.
    """
    device = torch.device(device)
    batch_size = eval_batch_size(batch_size, device)
    for name in attacks:
        parse_attack_name(name)  # fail on a typo before spending time on the others
    x_test = x_test.to(device)
    y_test = y_test.cpu()
    not_finite = check_outputs(model, x_test, len(class_counts), device, batch_size)
    rng_devices = [device] if device.type == "cuda" else []
    metrics: dict[str, dict] = {}
    full_correct: dict[str, torch.Tensor] = {}  # per-sample correctness of attacks run on all images
    extra_warnings: list[str] = []
    aa_info = None

    def run(name: str, idx: Optional[torch.Tensor], show: bool = True) -> tuple[torch.Tensor, Optional[object], float]:
        """Predictions under attack ``name`` on all images (``idx`` None) or on ``x_test[idx]``."""
        attack = build_attack(name, eps, step, seed=seed, batch_size=batch_size)
        xs, ys = (x_test, y_test) if idx is None else (x_test[idx.to(device)], y_test[idx])
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(seed)
            if isinstance(attack, AutoAttack):
                key = {"attack": name, "eps": attack.eps, "seed": seed, "batch_size": batch_size,
                       "indices": _digest(idx if idx is not None else torch.arange(len(y_test))),
                       "model": model_fingerprint(model)}
                state = Path(state_dir) / state_file_name(name) if state_dir is not None else None
                pred, found = predict_resumable(model, xs, ys, attack, device, batch_size, state, key,
                                                progress if show else None, name)
                extra_warnings.extend(w for w in found if w not in extra_warnings)
            else:
                pred = predict(model, xs, ys, attack, device, batch_size, progress if show else None, name)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return pred, attack, time.perf_counter() - t0

    for name in attacks:
        spec = parse_attack_name(name)
        idx = None
        if spec.kind == "aa" and aa_n_per_class is not None:
            idx = balanced_subset(y_test, int(aa_n_per_class), seed)
        pred, attack, seconds = run(name, idx)
        ys = y_test if idx is None else y_test[idx]
        rec = _record(pred, ys, class_counts)
        rec["attack"] = attack.describe() if attack is not None else {"name": "clean"}
        rec["seconds"] = seconds
        if spec.kind == "aa":
            rec.update({"subset": idx is not None, "n_per_class": aa_n_per_class, "subset_seed": seed})
            aa_info = {"attack": name, "subset": idx is not None, "n_per_class": aa_n_per_class, "seed": seed,
                       "n": len(ys), "state_file": state_file_name(name) if state_dir is not None else None}
        if idx is None:
            full_correct[name] = pred == y_test
        else:
            rec["_idx"] = idx
        metrics[name] = rec

    for name, rec in metrics.items():  # other attacks' accuracy on a subset attack's own images
        idx = rec.pop("_idx", None)
        if idx is None:
            continue
        same = {n: c[idx].double().mean().item() for n, c in full_correct.items()}
        if checks and not any(parse_attack_name(n).kind in ("pgd", "cw") for n in same):
            reference = _main_pgd(attacks)  # something to hold AutoAttack against (cheap on a subset)
            pred, _, _ = run(reference, idx, show=False)
            same[reference] = (pred == y_test[idx]).double().mean().item()
        rec["same_subset"] = same

    check_record = None
    if checks:
        if progress:
            progress("eval gradient-masking checks")
        check_record = _masking_checks(run, full_correct, y_test, len(class_counts), attacks, eps, seed,
                                       check_samples)
    warnings = [not_finite] * bool(not_finite) + masking_warnings(metrics, check_record) + list(extra_warnings)
    return {
        "metrics": metrics,
        "checks": check_record,
        "warnings": warnings,
        "evaluation": {"eps": eps, "step": step, "batch_size": batch_size, "seed": seed, "device": str(device),
                       "attacks": list(attacks), "autoattack": aa_info},
    }


def _main_pgd(attacks: Sequence[str]) -> str:
    """The first plain ``pgdK`` among ``attacks`` (the one the checks compare against), else pgd20."""
    for a in attacks:
        spec = parse_attack_name(a)
        if spec.kind == "pgd" and spec.eps is None:
            return a
    return "pgd20"


def _masking_checks(run, full_correct, y_test, num_classes, attacks, eps, seed, check_samples) -> dict:
    """FGSM, PGD at ε/2 and logit-scaled PGD on a balanced subset, next to the main attacks there.

    The subset is drawn like AutoAttack's (same seed), so with the same N per class they coincide.
    """
    per_class = max(1, math.ceil(check_samples / num_classes))
    idx = balanced_subset(y_test, per_class, seed)
    ys = y_test[idx]
    main = _main_pgd(attacks)
    steps = parse_attack_name(main).steps
    accuracy = {name: c[idx].double().mean().item() for name, c in full_correct.items()}
    seconds = 0.0
    for name in ("clean", main, "fgsm", f"{main}@{eps / 2:g}", f"ls{steps}"):
        if name in accuracy:
            continue
        pred, _, s = run(name, idx, show=False)
        seconds += s
        accuracy[name] = (pred == ys).double().mean().item()
    return {"eps": eps, "n": len(idx), "n_per_class": per_class, "seed": seed, "seconds": seconds,
            "accuracy": accuracy}


LONG_TAILED = 0.5  # a training set whose smallest class has at most half the images of its largest


def outside_groups(dataset: str, given: Optional[list[int]], own: list[int]) -> tuple[Optional[list[int]], dict]:
    """Where an outside model's head / medium / tail come from: ``(counts, record)``.

    The class counts the user ``given`` (the counts the model was trained on); without them the
    dataset's ``own`` training counts if they are long-tailed (the smallest class at most
    :data:`LONG_TAILED` of the largest); otherwise no groups (``counts`` None): a balanced dataset's
    counts say nothing about which classes the model saw less. ``record`` says which, in ``from``
    (``"class_counts"``, ``"dataset"`` or None) and in a sentence (``text``)."""
    if given is not None:
        return given, {"from": "class_counts", "text": "head / medium / tail from the class counts given"}
    lo, hi = min(own), max(own)
    if hi > 0 and lo <= LONG_TAILED * hi:
        return own, {"from": "dataset", "text": f"head / medium / tail from {dataset}'s own training counts "
                                                f"(long-tailed: {hi} to {lo} images per class)"}
    sizes = f"{lo}" if lo == hi else f"{lo}–{hi}"
    return None, {"from": None, "text": f"no head / medium / tail: {dataset}'s training set is not long-tailed "
                                        f"({sizes} images per class) and no class counts were given (give the "
                                        f"counts the model was trained on: class_counts=, --class-counts)"}


def named(values: list, names: list[str]) -> dict:
    """``values`` (one per class) keyed by class name (``"3: name"`` where names repeat)."""
    unique = len(set(names)) == len(names)
    return {(name if unique else f"{i}: {name}"): v for i, (name, v) in enumerate(zip(names, values))}


def evaluate_model(model: nn.Module, dataset: str, attacks: Sequence[str], *, eps: Optional[float] = None,
                   step: Optional[float] = None, n_per_class: Optional[int] = None,
                   aa_n_per_class: Optional[int] = None, class_counts: Optional[Sequence[int]] = None,
                   device: str = "auto", seed: int = 0, batch_size: Optional[int] = None, checks: bool = True,
                   data_root=None, progress=None) -> tuple[dict, list[str]]:
    """:func:`run_evaluation` of any ``model`` (images in [0, 1] → logits) on ``dataset``'s test set
    (a balanced seeded subset with ``n_per_class``): ``(record, class_names)``, the record as in
    ``result.json`` except that each ``per_class`` maps class name → accuracy, and that head /
    medium / tail are None when there are no groups (:func:`outside_groups`); ``evaluation`` names
    the dataset, the subset, the class counts used and where the groups come from (``groups``).
    The arguments are :func:`ltbench.evaluate`'s; the model's train/eval mode is restored."""
    from ltbench.data import get_dataset, load_raw
    from ltbench.env import resolve_device
    from ltbench.plugins import load_all

    if not isinstance(model, nn.Module):
        raise LtbenchError(f"evaluate needs a torch.nn.Module, got {type(model).__name__}")
    load_all()
    info = get_dataset(dataset)
    eps = info.eps if eps is None else float(eps)
    step = info.step if step is None else float(step)
    for name, value in (("eps", eps), ("step", step)):
        if not (value >= 0 and value != float("inf")):
            raise LtbenchError(f"{name} must be a finite number ≥ 0, got {value}")
    C = info.num_classes
    given = None if class_counts is None else [int(c) for c in class_counts]
    if given is not None and len(given) != C:
        raise LtbenchError(f"class_counts has {len(given)} entries; {dataset} has {C} classes")
    raw = load_raw(info, data_root)
    own = torch.bincount(raw.y_train.cpu(), minlength=C).tolist()
    counts, groups = outside_groups(dataset, given, own)
    x, y = raw.x_test, raw.y_test
    if n_per_class is not None:
        if int(n_per_class) < 1:
            raise LtbenchError(f"n_per_class must be at least 1, got {n_per_class}")
        idx = balanced_subset(y, int(n_per_class), seed)
        x, y = x[idx], y[idx]
    dev = resolve_device(device)
    was_training = model.training
    model = model.to(dev)
    try:
        out = run_evaluation(model, x, y, counts or own, list(attacks), eps=eps, step=step, device=dev,
                             batch_size=batch_size, seed=seed, aa_n_per_class=aa_n_per_class, state_dir=None,
                             checks=checks, progress=progress)
    finally:
        model.train(was_training)
    names = [str(n) for n in raw.class_names]
    for rec in out["metrics"].values():
        rec["per_class"] = named(rec["per_class"], names)
        if counts is None:
            rec.update(head=None, medium=None, tail=None)
    out["evaluation"].update({"dataset": dataset, "n_per_class": n_per_class, "class_counts": counts,
                              "groups": groups})
    return out, names
