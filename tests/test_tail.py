"""REAT's pieces against slow loop references written straight from the definitions (DESIGN.md)."""
from __future__ import annotations

import math

import pytest
import torch

from ltbench.method import EpochStats
from ltbench.losses import class_balanced_weights, effective_number
from methods.reat import REAT, TailLoss, first_tail_class, rbl_weights, tail_loss, tail_pair_weights


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster


# --- loop references -----------------------------------------------------------------------


def _softmax(v):
    m = max(v)
    e = [math.exp(a - m) for a in v]
    s = sum(e)
    return [a / s for a in e]


def _tail_setup(counts):
    C = len(counts)
    total = sum(counts)
    w = [math.sqrt(1.0 / (n / total)) for n in counts]
    return first_tail_class(C), w


def tail_reference_per_pair(f, y, counts):
    """Σ over tail anchors i and all j of s_ij·W_ij·KL(p_i ‖ q_j), / (#anchors · B); 0 without anchors."""
    first_tail, w = _tail_setup(counts)
    B = len(y)
    anchors = [i for i in range(B) if y[i] >= first_tail]
    if not anchors:
        return 0.0
    total = 0.0
    for i in anchors:
        p = _softmax(f[i])
        for j in range(B):
            q = _softmax(f[j])
            kl = sum(pd * (math.log(pd) - math.log(qd)) for pd, qd in zip(p, q))
            s = -1.0 if y[i] == y[j] else 1.0
            total += s * (w[y[i]] + w[y[j]]) * kl
    return total / (len(anchors) * B)


def tail_reference_official(f, y, counts):
    """Per anchor: KL averaged over all j and all feature elements, times mean_j s_ij·W_ij; mean over anchors."""
    first_tail, w = _tail_setup(counts)
    B, D = len(y), len(f[0])
    anchors = [i for i in range(B) if y[i] >= first_tail]
    if not anchors:
        return 0.0
    total = 0.0
    for i in anchors:
        p = _softmax(f[i])
        elems = []
        sw = []
        for j in range(B):
            q = _softmax(f[j])
            elems += [pd * (math.log(pd) - math.log(qd)) for pd, qd in zip(p, q)]
            sw.append((-1.0 if y[i] == y[j] else 1.0) * (w[y[i]] + w[y[j]]))
        total += (sum(elems) / (B * D)) * (sum(sw) / B)
    return total / len(anchors)


def tail_reference_torch(f, y, counts, per_pair):
    """The same two definitions with torch ops in Python loops, for gradients (p_i detached)."""
    first_tail, w = _tail_setup(counts.tolist())
    B, D = f.shape
    anchors = [i for i in range(B) if int(y[i]) >= first_tail]
    if not anchors:
        return f.sum() * 0
    total = f.new_zeros(())
    for i in anchors:
        p = torch.softmax(f[i].detach(), 0)
        kls, sws = [], []
        for j in range(B):
            log_q = torch.log_softmax(f[j], 0)
            kls.append((p * (p.log() - log_q)).sum())
            sws.append((-1.0 if int(y[i]) == int(y[j]) else 1.0) * (w[int(y[i])] + w[int(y[j])]))
        if per_pair:
            total = total + sum(s * k for s, k in zip(sws, kls))
        else:
            total = total + (sum(kls) / (B * D)) * (sum(sws) / B)
    return total / (len(anchors) * B) if per_pair else total / len(anchors)


COUNTS10 = [500, 300, 180, 110, 70, 40, 25, 15, 9, 5]


def _batch(seed, B=12, D=6, C=10, labels=None):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(B, D, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, C, (B,), generator=g) if labels is None else torch.tensor(labels)
    return f, y


# --- TAIL ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("per_pair", [True, False])
def test_tail_matches_loop_reference(seed, per_pair):
    f, y = _batch(seed, labels=[9, 0, 7, 3, 9, 8, 1, 7, 2, 5, 9, 4])
    counts = torch.tensor(COUNTS10, dtype=torch.float64)
    ref = (tail_reference_per_pair if per_pair else tail_reference_official)(f.tolist(), y.tolist(), COUNTS10)
    got = tail_loss(f, y, counts, per_pair=per_pair)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_the_timed_anchor_loop_is_the_same_tail():
    """tests/bench_tail.py times TailLoss against oracles.tail_loss_loop (one loop over anchors, a
    vector per anchor); that loop is the definition too: value and gradient, with anchors and without."""
    from oracles import tail_loss_loop

    counts = torch.tensor(COUNTS10, dtype=torch.float64)
    for labels in ([9, 0, 7, 3, 9, 8, 1, 7, 2, 5, 9, 4], [0] * 12):
        f, y = _batch(5, labels=labels)
        f.requires_grad_(True)
        loop = tail_loss_loop(f, y, counts)
        assert loop.item() == pytest.approx(tail_reference_per_pair(f.tolist(), y.tolist(), COUNTS10),
                                            rel=1e-9, abs=1e-12)
        vec = TailLoss(counts, per_pair=True)(f, y)
        (g_loop,) = torch.autograd.grad(loop, f)
        (g_vec,) = torch.autograd.grad(vec, f)
        assert torch.allclose(g_loop, g_vec, atol=1e-10)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("per_pair", [True, False])
def test_tail_random_labels_and_gradients(seed, per_pair):
    f, y = _batch(100 + seed, B=10, D=5)
    counts = torch.tensor(COUNTS10, dtype=torch.float64)
    ref = (tail_reference_per_pair if per_pair else tail_reference_official)(f.tolist(), y.tolist(), COUNTS10)
    f1 = f.clone().requires_grad_(True)
    got = tail_loss(f1, y, counts, per_pair=per_pair)
    assert got.item() == pytest.approx(ref, rel=1e-9, abs=1e-12)
    f2 = f.clone().requires_grad_(True)
    ref_t = tail_reference_torch(f2, y, counts, per_pair)
    assert ref_t.item() == pytest.approx(ref, rel=1e-9, abs=1e-12)
    (g1,) = torch.autograd.grad(got, f1)
    (g2,) = torch.autograd.grad(ref_t, f2)
    torch.testing.assert_close(g1, g2, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("per_pair", [True, False])
def test_tail_loss_object_reused_across_batch_sizes(per_pair):
    # λ and 1/B live in per-batch-size weights: one object must give λ·TAIL for every batch size, in any order.
    lam = 0.5
    tail = TailLoss(torch.tensor(COUNTS10, dtype=torch.float64), per_pair=per_pair, weight=lam)
    reference = tail_reference_per_pair if per_pair else tail_reference_official
    f, y = _batch(31, B=12, labels=[9, 0, 7, 3, 9, 8, 1, 7, 2, 5, 9, 4])
    for n in (12, 5, 12, 5):
        want = lam * reference(f[:n].tolist(), y[:n].tolist(), COUNTS10)
        assert tail(f[:n], y[:n]).item() == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_tail_float32_close_to_reference():
    f, y = _batch(7, B=32, D=16, labels=[i % 10 for i in range(32)])
    counts = torch.tensor(COUNTS10)
    for per_pair, ref_fn in ((True, tail_reference_per_pair), (False, tail_reference_official)):
        got = tail_loss(f.float(), y, counts, per_pair=per_pair)
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(ref_fn(f.tolist(), y.tolist(), COUNTS10), rel=1e-4, abs=1e-6)
    half = tail_loss(f.to(torch.bfloat16), y, counts)
    assert half.dtype == torch.float32 and torch.isfinite(half)


@pytest.mark.parametrize("per_pair", [True, False])
def test_tail_zero_without_tail_samples(per_pair):
    f, y = _batch(3, B=10, labels=[0, 1, 2, 3, 4, 5, 6, 0, 1, 2])
    f.requires_grad_(True)
    loss = tail_loss(f, y, torch.tensor(COUNTS10), per_pair=per_pair)
    assert loss.item() == 0.0
    (g,) = torch.autograd.grad(loss, f)
    assert torch.all(g == 0)


@pytest.mark.parametrize("label", [0, 5, 8])
@pytest.mark.parametrize("per_pair", [True, False])
def test_tail_batch_of_one_class(label, per_pair):
    f, y = _batch(11, B=9, labels=[label] * 9)
    ref = (tail_reference_per_pair if per_pair else tail_reference_official)(f.tolist(), y.tolist(), COUNTS10)
    got = tail_loss(f, y, torch.tensor(COUNTS10, dtype=torch.float64), per_pair=per_pair)
    assert got.item() == pytest.approx(ref, rel=1e-9, abs=1e-12)
    if label < first_tail_class(10):
        assert got.item() == 0.0
    else:  # every pair is same-class: s = −1, so the penalty is ≤ 0
        assert got.item() < 0


def test_tail_single_sample_and_reductions_differ():
    f, y = _batch(5, B=1, labels=[9])
    assert tail_loss(f, y, torch.tensor(COUNTS10)).item() == pytest.approx(0.0, abs=1e-12)
    f, y = _batch(6, labels=[9, 0, 7, 3, 9, 8, 1, 7, 2, 5, 9, 4])
    a = tail_loss(f, y, torch.tensor(COUNTS10), per_pair=True)
    b = tail_loss(f, y, torch.tensor(COUNTS10), per_pair=False)
    assert abs(a.item() - b.item()) > 1e-6


def test_tail_pair_weights_entries():
    counts = torch.tensor(COUNTS10, dtype=torch.float64)
    G = tail_pair_weights(counts)
    _, w = _tail_setup(COUNTS10)
    for a in range(10):
        for b in range(10):
            want = 0.0 if a < 7 else (-1.0 if a == b else 1.0) * (w[a] + w[b])
            assert G[a, b].item() == pytest.approx(want, rel=1e-12)
    assert tail_pair_weights(torch.tensor(COUNTS10)).dtype == torch.float32


@pytest.mark.parametrize("per_pair", [True, False])
def test_tail_large_batch_matches_autograd_reference(per_pair):
    # Many samples per class and all classes present: the class-level sums must add up.
    f, y = _batch(21, B=40, D=7, labels=[i % 10 for i in range(37)] + [9, 9, 8])
    counts = torch.tensor(COUNTS10, dtype=torch.float64)
    f1, f2 = f.clone().requires_grad_(True), f.clone().requires_grad_(True)
    got, ref = tail_loss(f1, y, counts, per_pair=per_pair), tail_reference_torch(f2, y, counts, per_pair)
    assert got.item() == pytest.approx(ref.item(), rel=1e-10)
    torch.testing.assert_close(torch.autograd.grad(got, f1)[0], torch.autograd.grad(ref, f2)[0], rtol=1e-8, atol=1e-12)


def test_tail_ignores_autocast():
    f, y = _batch(8, B=32, D=16, labels=[i % 10 for i in range(32)])
    tail = TailLoss(torch.tensor(COUNTS10, dtype=torch.float32))
    plain = tail(f.float(), y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = tail(f.float(), y)
    assert under.dtype == torch.float32
    assert under.item() == plain.item()


def test_reat_moves_its_tail_loss_with_it():
    m = REAT(REAT.Config(), 10, torch.tensor(COUNTS10, dtype=torch.float32))
    m.tail_loss.scaled_weights(8)  # cached on the CPU
    m.to(torch.device("meta"))
    assert m.tail_loss.device_type == "meta"
    assert all(w.device.type == "meta" for w in m.tail_loss.scaled_weights(8))


def test_first_tail_class():
    assert first_tail_class(10) == 7
    assert first_tail_class(100) == 67
    assert list(range(first_tail_class(100), 100)) == list(range(67, 100))


# --- RBL -----------------------------------------------------------------------------------


def rbl_reference(ae_counts, train_counts):
    C = len(train_counts)
    ws = []
    for n, N in zip(ae_counts, train_counts):
        beta = (N - 1.0) / N
        E = (1.0 - beta ** n) / (1.0 - beta)
        ws.append(1.0 / (E + 1e-5))
    s = sum(ws)
    return [w / s * C for w in ws]


@pytest.mark.parametrize("ae", [COUNTS10, [0, 3, 900, 1, 70, 40, 25, 15, 9, 2], [10] * 10, [1000] + [0] * 9])
def test_rbl_weights_match_loop_reference(ae):
    train = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    got = rbl_weights(torch.tensor(ae, dtype=torch.float32), torch.tensor(train, dtype=torch.float32))
    ref = rbl_reference(ae, train)
    assert got.sum().item() == pytest.approx(10.0, rel=1e-5)
    assert got.tolist() == pytest.approx(ref, rel=2e-4)


def test_rbl_single_image_class():
    # N = 1 → β = 0: E = 1 for n ≥ 1, and E = 0 (weight 1e5 before normalising) for n = 0.
    got = rbl_weights(torch.tensor([4.0, 0.0, 2.0]), torch.tensor([10.0, 1.0, 1.0]))
    ref = rbl_reference([4, 0, 2], [10, 1, 1])
    assert got.tolist() == pytest.approx(ref, rel=1e-5)


def test_effective_number_and_class_balanced_weights():
    n = torch.tensor([0.0, 1.0, 10.0, 5000.0])
    got = effective_number(n, 1 - 0.9999)
    ref = [(1 - 0.9999 ** k) / (1 - 0.9999) for k in n.tolist()]
    assert got.tolist() == pytest.approx(ref, rel=1e-4)
    w = class_balanced_weights(torch.tensor(COUNTS10, dtype=torch.float32), 0.9999)
    ref_w = [(1 - 0.9999) / (1 - 0.9999 ** k) for k in COUNTS10]
    ref_w = [v / sum(ref_w) * 10 for v in ref_w]
    assert w.tolist() == pytest.approx(ref_w, rel=1e-4)
    assert class_balanced_weights(torch.tensor([5.0, 50.0]), 0.0).tolist() == pytest.approx([1.0, 1.0])


def test_reat_rbl_state_from_predicted_counts():
    counts = torch.tensor(COUNTS10, dtype=torch.float32)
    m = REAT(REAT.Config(), 10, counts)
    assert m.rbl_w.tolist() == pytest.approx(rbl_reference(COUNTS10, COUNTS10), rel=2e-4)
    ae_counts = [4, 1, 0, 1, 0, 0, 0, 0, 0, 2]
    m.on_epoch_end(0, EpochStats(torch.tensor(ae_counts, dtype=torch.float32)))
    assert m.rbl_w.tolist() == pytest.approx(rbl_reference(ae_counts, COUNTS10), rel=2e-4)
    m.on_epoch_end(1, EpochStats(torch.tensor(COUNTS10, dtype=torch.float32)))  # each epoch's own counts
    assert m.rbl_w.tolist() == pytest.approx(rbl_reference(COUNTS10, COUNTS10), rel=2e-4)
