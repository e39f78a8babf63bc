"""`ltbench bench`: what it measures and how it turns times into ratios (never how fast it is)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from ltbench import bench
from ltbench.cli import main as cli_main
from ltbench.plugins import load_methods
from ltbench.registry import METHODS, MODIFIERS

TINY = ["bench", "--model", "small-cnn", "--set", "model.width=4", "--batch-size", "8", "--steps", "2",
        "--iters", "2", "--warmup", "0", "--tail-batch", "16", "--tail-iters", "1", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    assert cli_main([*TINY, "--out", str(out)]) == 0
    return json.loads(out.read_text()), out


def test_json_has_every_registered_method_and_the_reference_rows(record):
    rec, _ = record
    names = load_methods().names() + [f"pgd-at+{m}" for m in MODIFIERS.names()]
    assert {"pgd-at", "trades", "taet", "pgd-at+awp", "pgd-at+robustlt"} <= set(names)
    assert set(rec["settings"]["methods"]) == set(names)
    for row in ["standard", "attack iteration", *names]:
        t = rec["step_s"][row]
        assert t["n"] == 2 and t["min"] <= t["median"] <= t["max"] and t["images_per_s"] > 0
    assert set(rec["ratios"]["method / pgd-at"]) == set(names)
    assert set(rec["targets"]) == set(bench.TARGETS)
    assert rec["env"]["device"] == "cpu" and rec["load_avg_before"] is None or len(rec["load_avg_before"]) == 3


def test_ratios_are_computed_from_the_median_times(record):
    rec, _ = record
    st, K = rec["step_s"], rec["settings"]["steps"]
    med = {k: v["median"] for k, v in st.items()}
    floor = K * med["attack iteration"] + med["standard"]
    assert rec["floor_s"] == pytest.approx(floor)
    r = rec["ratios"]
    assert r["floor / standard"] == pytest.approx(floor / med["standard"])
    assert r["pgd-at / standard"] == pytest.approx(med["pgd-at"] / med["standard"])
    assert r["pgd-at / floor"] == pytest.approx(med["pgd-at"] / floor)
    for m in rec["settings"]["methods"]:
        assert r["method / pgd-at"][m] == pytest.approx(med[m] / med["pgd-at"])
    assert r["method / pgd-at"]["pgd-at"] == pytest.approx(1.0)
    tail = rec["tail"]
    if tail["available"]:
        assert tail["loop / vectorised"] == pytest.approx(tail["loop_s"]["min"] / tail["vectorised_s"]["min"])
        assert rec["targets"]["tail loop / vectorised"]["value"] == pytest.approx(tail["loop / vectorised"])


def test_compute_ratios_and_targets_on_known_numbers():
    step_s = {"standard": 1.0, "attack iteration": 0.6, "pgd-at": 7.35, "reat": 7.5, "trades": 8.8}
    r = bench.compute_ratios(step_s, 10, ["pgd-at", "reat", "trades"])
    assert r["floor / standard"] == pytest.approx(7.0)
    assert r["pgd-at / floor"] == pytest.approx(1.05)
    assert r["method / pgd-at"]["trades"] == pytest.approx(8.8 / 7.35)
    t = bench.check_targets(r, {"loop / vectorised": 19.0})
    assert t["pgd-at / floor"]["met"] is True
    assert t["reat / pgd-at"]["met"] is True  # 7.5 / 7.35 = 1.02
    assert t["tail loop / vectorised"]["met"] is False
    assert bench.check_targets({}, {})["reat / pgd-at"]["met"] is None


def test_table_and_command_are_written_next_to_the_json(record):
    rec, out = record
    table = out.with_suffix(".md").read_text()
    assert "floor" in table and "pgd-at" in table and "Targets" in table
    assert rec["command"] in table
    cmd = rec["command"]
    assert cmd.startswith("ltbench bench ") and "--batch-size 8" in cmd and "--steps 2" in cmd


def test_unknown_method_is_a_clear_error(tmp_path, capsys):
    assert cli_main([*TINY, "--methods", "no-such-method", "--out", str(tmp_path / "b.json")]) == 2
    assert "no-such-method" in capsys.readouterr().err


def test_bench_refuses_a_device_that_is_not_there(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert cli_main([*TINY, "--device", "cuda", "--out", str(tmp_path / "b.json")]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err
    assert cli_main([*TINY, "--device", "gpu0", "--out", str(tmp_path / "b.json")]) == 2
    assert "unknown device 'gpu0'" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_tail_loop_reference_matches_the_vectorised_tail_loss():
    """REAT's TailLoss and the bench's per-anchor loop both equal the independent oracle."""
    from methods.reat import TailLoss
    from oracles import tail_loss_loop

    g = torch.Generator().manual_seed(0)
    counts = torch.tensor([500.0, 300, 200, 120, 80, 50, 30, 20, 12, 8])
    for labels in (torch.randint(0, 10, (24,), generator=g), torch.zeros(24, dtype=torch.long)):
        f = torch.randn(24, 16, generator=g, dtype=torch.float64, requires_grad=True)
        tail = TailLoss(counts.double(), per_pair=True)
        a = tail(f, labels)
        b = tail_loss_loop(f, labels, counts)
        c = bench.tail_loss_loop(tail, f, labels)
        assert torch.allclose(a.double(), b.double(), atol=1e-10)
        assert torch.allclose(c.double(), b.double(), atol=1e-10)
        ga, = torch.autograd.grad(a, f)
        gb, = torch.autograd.grad(b, f)
        gc, = torch.autograd.grad(c, f)
        assert torch.allclose(ga, gb, atol=1e-10) and torch.allclose(gc, gb, atol=1e-10)
        assert math.isfinite(float(a.detach()))


def test_train_step_makes_no_host_sync_it_could_avoid():
    """The engine step runs under CUDA's sync debug mode without a warning (CUDA only)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from ltbench.engine.train import EpochAccumulator, train_step
    from ltbench.method import BatchContext
    from ltbench.method_factory import build_method
    from ltbench.models import build_model

    dev = torch.device("cuda")
    counts = torch.tensor([50.0, 30, 20, 12, 8, 5, 3, 2, 2, 1], device=dev)
    from ltbench.modifier import parse_spec

    for spec in [*METHODS.names(), "pgd-at +awp", "pgd-at +robustlt", "taet +robustlt +awp"]:
        p = parse_spec(spec)
        method = build_method(p.name, p.overrides, 10, counts, p.modifiers).to(dev)
        model = build_model("small-cnn", 10, 3, (0.5,) * 3, (0.5,) * 3, width=4)
        head = method.build_head(model.feature_dim, 10, counts)
        if head is not None:
            model.head = head
        model = model.to(dev, memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.rand(8, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (8,), device=dev)
        acc = EpochAccumulator(10, dev)
        train_step(model, model, method, opt, x, y, BatchContext(model, x, y, counts, 8 / 255), acc,
                   eps=8 / 255, step=2 / 255, steps=2)  # warm-up (lazy init may sync)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            train_step(model, model, method, opt, x, y, BatchContext(model, x, y, counts, 8 / 255), acc,
                       eps=8 / 255, step=2 / 255, steps=2)
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_bf16_autocast_keeps_parameters_and_batchnorm_statistics_fp32():
    """What the engine relies on for bf16 on CUDA, checked with CPU autocast as a stand-in."""
    from ltbench.models import build_model

    model = build_model("small-cnn", 10, 3, (0.5,) * 3, (0.5,) * 3, width=4).train()
    x = torch.rand(8, 3, 16, 16)
    dev_type = "cuda" if torch.cuda.is_available() else "cpu"
    model, x = model.to(dev_type), x.to(dev_type)
    with torch.autocast(dev_type, dtype=torch.bfloat16):
        logits = model(x)
    logits.float().sum().backward()
    assert logits.dtype == torch.bfloat16
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point():
            assert t.dtype == torch.float32, name
    for p in model.parameters():
        assert p.grad.dtype == torch.float32


def test_fastest_round_ratios_use_each_rows_minimum(record):
    rec, _ = record
    st, K = rec["step_s"], rec["settings"]["steps"]
    floor = K * st["attack iteration"]["min"] + st["standard"]["min"]
    assert rec["ratios_fastest"]["pgd-at / floor"] == pytest.approx(st["pgd-at"]["min"] / floor)
    assert rec["targets_fastest"]["pgd-at / floor"]["value"] == pytest.approx(st["pgd-at"]["min"] / floor)
