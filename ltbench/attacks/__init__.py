"""Attacks: one file each, sharing :mod:`ltbench.attacks.base`; by name through :func:`build_attack`."""
from ltbench.attacks.autoattack import AutoAttack
from ltbench.attacks.base import Attack, attack_mode, autocast_for, ce_loss, cw_margin_loss, predict_labels, project
from ltbench.attacks.cw import CW
from ltbench.attacks.factory import AttackSpec, build_attack, parse_attack_name
from ltbench.attacks.fgsm import FGSM
from ltbench.attacks.logit_scaled import LogitScaledPGD, ScaledCE
from ltbench.attacks.pgd import PGD, pgd_perturb, pgd_search

__all__ = ["Attack", "attack_mode", "autocast_for", "ce_loss", "cw_margin_loss", "predict_labels", "project",
           "PGD", "pgd_perturb", "pgd_search", "FGSM", "CW", "LogitScaledPGD", "ScaledCE", "AutoAttack",
           "AttackSpec", "build_attack", "parse_attack_name"]
