"""Fake-quantization overhead and search-time quality speed; prints one JSON document.

* train_step: median wall time of one SGD training step of the fake-quantized model (W4A4 on
  every layer; LSQ-learned scales as `hwq finetune` uses them, and observer scales recomputed
  every step) over that of the FP32 model: `resnet20` at 3x32x32 with batch 64 (timing only:
  random inputs) and `digits_resnet` at batch 64 (real digits). Target ratio <= 1.5.
* ptq_eval: wall time of one post-training policy evaluation of the trained `digits_resnet`
  (`PTQAccuracy`: calibrated once, validation split of 359 images) on one thread, over random
  policies; and of the generic path (apply_policy + calibrate + evaluate) for comparison.
* sensitivity: Kendall tau between the measured sensitivity proxy (sum of per-layer loss
  increases; and the Hessian-trace variant) and measured PTQ accuracy over random policies
  (tau of -proxy vs accuracy: 1 = the proxy ranks policies exactly as accuracy does).

Usage: python benchmarks/quant_overhead.py [--threads 1] [--policies 200] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn


def _median_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    times = []
    for i in range(steps + 2):  # two warm-up steps
        t0 = time.perf_counter()
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_step_ratio(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> dict:
    from hwq.quant.apply import apply_policy, calibrate, quantizable_layers

    names = quantizable_layers(model, x[:1])
    out: dict = {"batch": int(x.shape[0]), "input": list(x.shape[1:]), "policy": "W4A4"}
    fp32 = _median_step(model, x, y, steps)
    out["fp32_step_s"] = fp32
    for label, learn in (("lsq", True), ("observer", False)):
        q = apply_policy(model, [(4, 4)] * len(names), layer_names=names, learn_scales=learn)
        calibrate(q, [x], 1)
        t = _median_step(q, x, y, steps)
        out[f"fake_quant_{label}_step_s"] = t
        out[f"ratio_{label}"] = t / fp32
    out["ratio"] = out["ratio_lsq"]
    return out


def ptq_speed_and_tau(policies: int, seed: int) -> tuple[dict, dict]:
    from scipy.stats import kendalltau

    from hwq.data import digits_calibration, load_digits_splits
    from hwq.models.digits import load_trained_digits_resnet
    from hwq.quant.apply import apply_policy, calibrate
    from hwq.quant.finetune import accuracy
    from hwq.quant.ptq import PTQAccuracy
    from hwq.quant.sensitivity import measure_sensitivity

    model, info = load_trained_digits_resnet(0)
    data = load_digits_splits()
    calib = digits_calibration(4)
    val = (data.val.x, data.val.y)
    t0 = time.perf_counter()
    ev = PTQAccuracy(model, calib, val)
    setup = time.perf_counter() - t0
    widths = [2, 4, 8]  # BitFusion's search_default widths: 9 (w, a) pairs
    rng = np.random.default_rng(seed)
    arr = rng.choice(widths, size=(policies, len(ev.names), 2))
    per = []
    accs = []
    for p in arr:
        t = time.perf_counter()
        accs.append(ev.accuracy_of_pairs([(int(w), int(a)) for w, a in p]))
        per.append(time.perf_counter() - t)
    accs_np = np.array(accs)
    generic = []
    for p in arr[:10]:
        t = time.perf_counter()
        q = calibrate(apply_policy(model, p.tolist(), layer_names=ev.names), calib, 4)
        accuracy(q, [val])
        generic.append(time.perf_counter() - t)
    cached = []
    for p in arr[:50]:
        t = time.perf_counter()
        ev.accuracy_of_pairs([(int(w), int(a)) for w, a in p])
        cached.append(time.perf_counter() - t)
    ptq = {
        "model": "digits_resnet",
        "val_images": int(len(data.val)),
        "policies": int(policies),
        "distinct_policies": int(len({tuple(map(tuple, p)) for p in arr.tolist()})),
        "setup_s": setup,
        "first_policy_s": per[0],
        "mean_s": float(np.mean(per)),
        "median_s": float(np.median(per)),
        "p95_s": float(np.percentile(per, 95)),
        "max_s": float(np.max(per)),
        "cached_hit_s": float(np.median(cached)),
        "generic_path_mean_s": float(np.mean(generic)),
        "accuracy_range": [float(accs_np.min()), float(accs_np.max())],
        "fp32_val_accuracy": info["fp32_val_accuracy"],
    }
    pairs = [(w, a) for w in widths for a in widths]
    t = time.perf_counter()
    table = measure_sensitivity(ev, pairs)
    measure_s = time.perf_counter() - t
    proxy = table.proxy_many(arr, ev.names)
    tau, pval = kendalltau(-proxy, accs_np)
    t = time.perf_counter()
    htable = measure_sensitivity(ev, pairs, method="hessian")
    hessian_s = time.perf_counter() - t
    htau, hpval = kendalltau(-htable.proxy_many(arr, ev.names), accs_np)
    sens = {
        "policies": int(policies),
        "pairs": [f"{w}x{a}" for w, a in pairs],
        "split": "validation (accuracy); 4 calibration batches of training data (loss)",
        "loss_proxy": {"measure_s": measure_s, "kendall_tau": float(tau), "p_value": float(pval)},
        "hessian_proxy": {
            "measure_s": hessian_s,
            "kendall_tau": float(htau),
            "p_value": float(hpval),
        },
        "kendall_tau": float(tau),
    }
    return ptq, sens


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--policies", type=int, default=200)
    ap.add_argument("--steps", type=int, default=5, help="measured training steps per model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-resnet20", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from hwq.data import load_digits_splits
    from hwq.models import load_model
    from hwq.models.digits import load_trained_digits_resnet

    doc: dict = {"threads": args.threads, "torch": torch.__version__}
    steps: dict = {}
    if not args.skip_resnet20:
        model = load_model("resnet20")
        x = torch.randn(64, 3, 32, 32)
        y = torch.randint(0, 10, (64,))
        steps["resnet20"] = train_step_ratio(model, x, y, args.steps)
        print(f"resnet20: ratio {steps['resnet20']['ratio']:.3f}", file=sys.stderr)
    digits_model, _ = load_trained_digits_resnet(0)
    train = load_digits_splits().train
    steps["digits_resnet"] = train_step_ratio(
        digits_model, train.x[:64], train.y[:64], max(args.steps, 20)
    )
    doc["train_step"] = steps
    doc["ptq_eval"], doc["sensitivity"] = ptq_speed_and_tau(args.policies, args.seed)
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
