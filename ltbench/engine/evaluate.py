"""End-of-job evaluation: accuracy per class under each attack, in large batches."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ltbench.attacks import PGD, ce_loss, cw_margin_loss
from ltbench.attacks.base import autocast_for
from ltbench.errors import LtbenchError
from ltbench.metrics import confusion_counts, summarize


def build_attack(name: str, eps: float, step: float) -> Optional[Callable]:
    """``clean`` → None; ``pgdK`` → PGD-K (CE); ``cwK`` → PGD-K on the CW margin."""
    if name == "clean":
        return None
    for prefix, loss in (("pgd", ce_loss), ("cw", cw_margin_loss)):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return PGD(eps, step, steps=int(name[len(prefix):]), loss_fn=loss)
    raise LtbenchError(f"unknown attack {name!r}; known: clean, pgdK, cwK (e.g. pgd20, cw20)")


def predict(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, attack, device, batch_size: int) -> torch.Tensor:
    """Predicted labels on (attacked) inputs, batch by batch; the test set stays uint8 until used."""
    preds = []
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(x_u8), batch_size):
            xb = x_u8[i:i + batch_size].to(device, non_blocking=True).float().div_(255)
            yb = y[i:i + batch_size].to(device, non_blocking=True)
            xb = xb.contiguous(memory_format=torch.channels_last)
            if attack is not None:
                xb = attack(model, xb, yb)
            with torch.no_grad(), autocast_for(device):
                preds.append(model(xb).argmax(1))
    finally:
        model.train(was_training)
    return torch.cat(preds).cpu()


def evaluate(model: nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, class_counts: list[int],
             attacks: list[str], eps: float, step: float, device: torch.device, batch_size: int = 1000,
             progress: Optional[Callable[[str], None]] = None) -> dict:
    """Accuracy record (see :func:`ltbench.metrics.summarize`) for each named attack."""
    results = {}
    num_classes = len(class_counts)
    for name in attacks:
        if progress:
            progress(f"eval {name}")
        pred = predict(model, x_test, y_test, build_attack(name, eps, step), device, batch_size)
        rec = summarize(pred == y_test, y_test, class_counts)
        rec["confusion"] = confusion_counts(pred, y_test, num_classes)
        results[name] = rec
    return results
