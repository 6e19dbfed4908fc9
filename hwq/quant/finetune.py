"""Verification: quantization-aware fine-tuning (QAT) with knowledge distillation.

As the automated precision configuration patent describes (Tandemlaunch, 2019): fine-tune the
quantized network with distillation from the full-precision teacher, evaluate it, record it. The
student is `apply_policy(model, policy)` calibrated on a few training batches; the loss is

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)

Records go to `verify.parquet` (DESIGN.md §6) through `hwq.runs` (`write_verify_parquet`,
`RunWriter.write_verify`).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hwq.errors import UserError
from hwq.policy import PolicyLike
from hwq.quant.apply import apply_policy, calibrate, quantizable_layers
from hwq.torch_threads import one_thread

log = logging.getLogger("hwq.quant.finetune")


def _xy(batch: Any) -> tuple[Tensor, Tensor]:
    if isinstance(batch, Mapping):
        raise UserError("data batches must be (inputs, labels) pairs, found a mapping")
    try:
        x, y = batch[0], batch[1]
    except (TypeError, IndexError, KeyError):
        raise UserError(
            f"data batches must be (inputs, labels) pairs, found {type(batch).__name__}"
        ) from None
    return x, y


@torch.no_grad()
def accuracy(model: nn.Module, data: Iterable[Any]) -> float:
    """Top-1 accuracy (a fraction) of `model` in eval mode over (inputs, labels) batches."""
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for batch in data:
            x, y = _xy(batch)
            correct += int((model(x).argmax(1) == y).sum())
            total += int(y.numel())
    finally:
        model.train(was_training)
    if not total:
        raise UserError("accuracy: the evaluation data has no samples")
    return correct / total


def distillation_loss(
    student: Tensor, teacher: Tensor, labels: Tensor, alpha: float, temperature: float
) -> Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)."""
    t = float(temperature)
    kd = F.kl_div(
        F.log_softmax(student / t, dim=1),
        F.log_softmax(teacher / t, dim=1),
        log_target=True,
        reduction="batchmean",
    ) * (t * t)
    if alpha >= 1.0:
        return kd
    return alpha * kd + (1.0 - alpha) * F.cross_entropy(student, labels)


def finetune(
    model: nn.Module,
    policy: PolicyLike,
    train: Iterable[Any],
    test: Iterable[Any],
    *,
    epochs: int = 3,
    lr: float = 0.005,
    alpha: float = 0.9,
    temperature: float = 4.0,
    weight_decay: float = 0.0,
    calib: Iterable[Any] | None = None,
    calib_batches: int = 4,
    fold_bn: bool = False,
    learn_scales: bool = True,
    weight_observer: str = "minmax",
    act_observer: str = "minmax",
    freeze_bn: bool = False,
    val: Iterable[Any] | None = None,
    layer_names: Sequence[str] | None = None,
    example_input: Any = None,
    seed: int = 0,
    teacher: nn.Module | None = None,
    fp32_accuracy: float | None = None,
    return_model: bool = False,
    on_step: Callable[[], None] | None = None,
    requantize_outputs: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], nn.Module]:
    """QAT with distillation of `policy` on `model` (trained FP32 weights; also the teacher
    unless `teacher` is given) for `epochs` over `train`, evaluated on `test`.

    Returns the record `{policy_id, fp32_accuracy, ptq_accuracy, qat_accuracy, epochs, wall_s}`
    (accuracies as fractions; ptq = the calibrated student before fine-tuning), and the
    fine-tuned model too with `return_model`. `on_step` is called after every optimiser step
    (progress bars). Runs on one intra-op thread (`hwq.torch_threads`): the same record on any
    machine and in any process.
    """
    if epochs < 0:
        raise UserError(f"--epochs: expected a non-negative integer, found {epochs}")
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"--alpha: expected a number in [0, 1], found {alpha}")
    if temperature <= 0:
        raise UserError(f"--temperature: expected a positive number, found {temperature}")
    t0 = time.perf_counter()
    teacher = copy.deepcopy(teacher if teacher is not None else model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    with one_thread(), torch.random.fork_rng(devices=[]):  # the same numbers on any machine
        if layer_names is None:
            if example_input is None:
                example_input = _first_inputs(test)
            layer_names = quantizable_layers(model, example_input)
        torch.manual_seed(seed)
        if fp32_accuracy is None:
            fp32_accuracy = accuracy(teacher, test)
        student = apply_policy(
            model,
            policy,
            fold_bn=fold_bn,
            layer_names=layer_names,
            learn_scales=learn_scales,
            weight_observer=weight_observer,
            act_observer=act_observer,
            requantize_outputs=requantize_outputs,
        )
        calibrate(student, calib if calib is not None else train, calib_batches)
        ptq_accuracy = accuracy(student, test)
        if epochs > 0:
            best_epoch = _train(
                student,
                teacher,
                train,
                val,
                epochs,
                lr,
                alpha,
                temperature,
                weight_decay,
                freeze_bn,
                on_step,
            )
        else:
            best_epoch = 0
        qat_accuracy = accuracy(student, test)
    record = {
        "policy_id": student.hwq_policy_id,
        "fp32_accuracy": float(fp32_accuracy),
        "ptq_accuracy": float(ptq_accuracy),
        "qat_accuracy": float(qat_accuracy),
        "epochs": int(epochs),
        "wall_s": time.perf_counter() - t0,
    }
    if val is not None:
        record["selected_epoch"] = best_epoch
    log.info(
        "policy %s: fp32 %.4f, ptq %.4f, qat %.4f after %d epoch(s) in %.1f s",
        record["policy_id"],
        record["fp32_accuracy"],
        record["ptq_accuracy"],
        record["qat_accuracy"],
        epochs,
        record["wall_s"],
    )
    return (record, student) if return_model else record


def _first_inputs(data: Iterable[Any]) -> Tensor:
    for batch in data:
        return _xy(batch)[0][:1]
    raise UserError("the evaluation data has no batches")


def _train(
    student: nn.Module,
    teacher: nn.Module,
    train: Iterable[Any],
    val: Iterable[Any] | None,
    epochs: int,
    lr: float,
    alpha: float,
    temperature: float,
    weight_decay: float,
    freeze_bn: bool,
    on_step: Callable[[], None] | None = None,
) -> int:
    """Fine-tune `student` in place. With `val`, the weights of the epoch with the best validation
    accuracy (epoch 0 = the calibrated starting point) are kept; a later epoch replaces them only
    when strictly better, so fine-tuning that validation cannot tell from its start returns the
    start (at seed 2, W4A4 on digits, three epochs tied the start's 0.9861 and lost one test
    image of its 0.9972). Returns the kept epoch."""
    scale_params = [p for n, p in student.named_parameters() if n.endswith("scale_param")]
    scale_ids = {id(p) for p in scale_params}
    others = [p for p in student.parameters() if id(p) not in scale_ids and p.requires_grad]
    groups = [{"params": others, "weight_decay": weight_decay}]
    if scale_params:
        groups.append({"params": scale_params, "weight_decay": 0.0})
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9)
    try:
        steps = epochs * len(train)  # type: ignore[arg-type]
    except TypeError:
        steps = 0
    best_epoch, best_acc, best_state = 0, -1.0, None
    if val is not None:
        best_acc, best_state = accuracy(student, val), copy.deepcopy(student.state_dict())
    step = 0
    for epoch in range(1, epochs + 1):
        student.train()
        if freeze_bn:  # running statistics stay those of the FP32 model
            for m in student.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        for batch in train:
            x, y = _xy(batch)
            if steps:  # cosine decay over the whole fine-tuning
                for g in opt.param_groups:
                    g["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / steps))
            with torch.no_grad():
                t_logits = teacher(x)
            loss = distillation_loss(student(x), t_logits, y, alpha, temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if on_step is not None:
                on_step()
        student.eval()
        if val is not None:
            acc = accuracy(student, val)
            log.debug("epoch %d: validation accuracy %.4f", epoch, acc)
            if acc > best_acc:
                best_epoch, best_acc = epoch, acc
                best_state = copy.deepcopy(student.state_dict())
    student.eval()
    if val is not None and best_state is not None and best_epoch != epochs:
        student.load_state_dict(best_state)
    return best_epoch if val is not None else epochs
