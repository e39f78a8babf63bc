"""`ltbench bench`: what it measures and how it turns times into ratios (never how fast it is)."""
from __future__ import annotations

import json
import traceback

import pytest
import torch

from ltbench import bench
from ltbench.cli import main as cli_main
from ltbench.plugins import load_methods
from ltbench.registry import METHODS, MODIFIERS

from host_reads import HostReadMode, cuda_sync_errors

TINY = ["bench", "--model", "small-cnn", "--set", "model.width=4", "--batch-size", "8", "--steps", "2",
        "--iters", "2", "--warmup", "0", "--device", "cpu", "--quiet"]


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
    assert rec["settings"]["reference"] == "pgd-at"
    with_target = {n for n in names if n in METHODS and METHODS.get(n).step_cost_target is not None}
    assert with_target == {"reat"}  # the speed target REAT's vectorised TAIL promises
    assert set(rec["targets"]) == {"pgd-at / floor", "reat / pgd-at"}
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
    assert rec["targets"]["reat / pgd-at"]["value"] == pytest.approx(med["reat"] / med["pgd-at"])


def test_compute_ratios_and_targets_on_known_numbers():
    step_s = {"standard": 1.0, "attack iteration": 0.6, "pgd-at": 7.35, "reat": 7.5, "trades": 8.8}
    load_methods()
    r = bench.compute_ratios(step_s, 10, ["pgd-at", "reat", "trades"], "pgd-at")
    assert r["floor / standard"] == pytest.approx(7.0)
    assert r["pgd-at / floor"] == pytest.approx(1.05)
    assert r["method / pgd-at"]["trades"] == pytest.approx(8.8 / 7.35)
    targets = bench.speed_targets(["pgd-at", "reat", "trades", "reat+awp"], "pgd-at")
    assert {k: (t.op, t.bound) for k, t in targets.items()} == {"pgd-at / floor": ("≤", bench.FLOOR_TARGET),
                                                                 "reat / pgd-at": ("≤", 1.05)}
    t = bench.check_targets(r, targets)
    assert t["pgd-at / floor"]["met"] is True
    assert t["reat / pgd-at"]["met"] is True  # 7.5 / 7.35 = 1.02
    step_s["reat"] = 7.8  # 1.061
    assert bench.check_targets(bench.compute_ratios(step_s, 10, ["reat"], "pgd-at"),
                               targets)["reat / pgd-at"]["met"] is False
    assert bench.check_targets({}, targets)["reat / pgd-at"]["met"] is None


def test_the_reference_is_the_registrys_cost_baseline_not_a_name_in_bench():
    """Ratios are to whatever method is given as the reference; no reference, no ratios to it."""
    step_s = {"standard": 1.0, "attack iteration": 0.5, "trades": 9.0, "mart": 6.0}
    r = bench.compute_ratios(step_s, 10, ["trades", "mart"], "mart")
    assert r["mart / floor"] == pytest.approx(1.0) and r["method / mart"]["trades"] == pytest.approx(1.5)
    assert "pgd-at / floor" not in r
    r = bench.compute_ratios(step_s, 10, ["trades", "mart"], None)
    assert set(r) == {"attack iteration / standard", "floor / standard", "method / floor"}
    assert bench.speed_targets(["trades", "mart"], None) == {}


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


def test_tail_benchmark_times_reats_loss_against_the_oracle_loop(tmp_path):
    """tests/bench_tail.py: both variants agree (value and gradient) on every row it writes, and the
    ratio it reports is the one of the fastest calls."""
    import bench_tail

    out = tmp_path / "tail.json"
    assert bench_tail.main(["--widths", "8", "--batch", "24", "--rounds", "1", "--device", "cpu",
                            "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert [(r["feature_dim"], r["labels"]) for r in rec["rows"]] == [(8, "balanced"), (8, "longtail")]
    for r in rec["rows"]:
        assert r["agreement"]["match"] and r["vectorised_s"]["n"] == bench_tail.BLOCK
        assert r["loop / vectorised"] == pytest.approx(r["loop_s"]["min"] / r["vectorised_s"]["min"])
    assert rec["target"]["value"] == rec["rows"][0]["loop / vectorised"]
    assert "loop / vectorised" in out.with_suffix(".md").read_text()


def host_reads_in_train_steps(dev: torch.device, watch) -> list[str]:
    """One training step of every method (and the modifiers) inside ``watch()``, after a warm-up step
    outside it (lazy initialisation may read); each failure as "spec: error at file:line", so that one
    run names them all."""
    from ltbench.engine.train import EpochAccumulator, attach_auxiliary_copy, train_step
    from ltbench.method import BatchContext
    from ltbench.method_factory import build_method
    from ltbench.models import build_model
    from ltbench.modifier import parse_spec

    counts = torch.tensor([50.0, 30, 20, 12, 8, 5, 3, 2, 2, 1], device=dev)
    failures = []
    specs = [*load_methods().names(), "pgd-at +awp", "pgd-at +robustlt", "taet +robustlt +awp"]
    assert {"faal", "reat", "sd-lt", "wat"} <= set(specs)  # the methods/ folder, not only the core
    for spec in specs:
        p = parse_spec(spec)
        method = build_method(p.name, p.overrides, 10, counts, p.modifiers).to(dev)
        model = build_model("small-cnn", 10, 3, (0.5,) * 3, (0.5,) * 3, width=4)
        head = method.build_head(model.feature_dim, 10, counts)
        if head is not None:
            model.head = head
        model = model.to(dev, memory_format=torch.channels_last)
        attach_auxiliary_copy(method, model)  # SD-LT's teacher, as in a job
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.rand(8, 3, 32, 32, device=dev).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (8,), device=dev)
        acc = EpochAccumulator(10, dev)

        def step():
            train_step(model, model, method, opt, x, y, BatchContext(model, x, y, counts, 8 / 255), acc,
                       eps=8 / 255, step=2 / 255, steps=2)

        step()
        try:
            with watch():
                step()
        except RuntimeError as exc:  # "called a synchronizing CUDA operation" / "host read: ..."
            frame = traceback.extract_tb(exc.__traceback__)[-2 if "host read" in str(exc) else -1]
            failures.append(f"{spec}: {exc} at {frame.filename}:{frame.lineno}")
    return failures


def test_train_step_makes_no_host_sync_it_could_avoid():
    """The engine step of every method runs under CUDA's sync debug mode without a sync (CUDA only)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    failures = host_reads_in_train_steps(torch.device("cuda"), cuda_sync_errors)
    assert not failures, "\n".join(failures)


def test_train_step_reads_nothing_on_the_host_cpu_stand_in():
    """The same on the CPU with tests/host_reads.py's stand-in, which catches the Python-level host
    reads (FAAL's ``candidates[first]`` of a 0-dim index, found on an H200, is one) in every CI run."""
    with pytest.raises(RuntimeError, match="host read"):  # the stand-in does catch such an index
        t = torch.arange(5.0)
        with HostReadMode():
            t[t.argmax()]
    failures = host_reads_in_train_steps(torch.device("cpu"), HostReadMode)
    assert not failures, "\n".join(failures)


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
