"""Attacks: one registered file each (``@register_attack``), sharing :mod:`ltbench.attacks.base`; by
name through :func:`build_attack`. Importing this package imports every module in it, so a new
attack file registers itself without being listed anywhere."""
import importlib as _importlib
import pkgutil as _pkgutil

from ltbench.attacks.autoattack import AutoAttack
from ltbench.attacks.base import Attack, attack_mode, autocast_for, ce_loss, cw_margin_loss, predict_labels, project
from ltbench.attacks.clean import Clean
from ltbench.attacks.cw import CW
from ltbench.attacks.factory import AttackSpec, build_attack, parse_attack_name
from ltbench.attacks.fgsm import FGSM
from ltbench.attacks.logit_scaled import LogitScaledPGD, ScaledCE
from ltbench.attacks.pgd import PGD, pgd_perturb, pgd_search, reaching_step

for _info in _pkgutil.iter_modules(__path__):  # registration side effects of every attack file
    if not _info.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["Attack", "attack_mode", "autocast_for", "ce_loss", "cw_margin_loss", "predict_labels", "project",
           "PGD", "pgd_perturb", "pgd_search", "reaching_step", "FGSM", "CW", "LogitScaledPGD", "ScaledCE",
           "AutoAttack", "Clean", "AttackSpec", "build_attack", "parse_attack_name"]
