"""PGD-AT: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018, Eq. (2.1): min_θ E max_{‖δ‖∞≤ε} CE(f_θ(x+δ), y), the inner
maximisation solved by PGD with a uniform random start.

Departures from the authors' code: none in the method (their release, MadryLab's
``cifar10_challenge``, also clips the uniform start to the image range, as ltbench does by default).
"""
from ltbench.method import Method
from ltbench.registry import register_method


@register_method("pgd-at")
class PGDAT(Method):
    """PGD-AT (Madry et al. 2018): cross-entropy on PGD adversarial examples."""

    baseline_rank = 0  # every method is paired with PGD-AT first
