"""Attacks: one file each, sharing :mod:`ltbench.attacks.base`."""
from ltbench.attacks.base import Attack, attack_mode, ce_loss, cw_margin_loss, project
from ltbench.attacks.pgd import PGD, pgd_perturb

__all__ = ["Attack", "attack_mode", "ce_loss", "cw_margin_loss", "project", "PGD", "pgd_perturb"]
