"""`digits_resnet`: a small ResNet for the bundled 1x8x8 handwritten digits (hwq.data).

Architecture: a 3x3 stem of 16 channels (BN, ReLU), one BasicBlock at 16 channels, one at 32
channels with stride 2 and a 1x1 projection shortcut (`layer2.0.downsample.0`, which reads the
same tensor as `layer2.0.conv1`, as in HAWQ-V3's ResNets), global average pooling and a linear
head: 7 quantizable layers, 19,706 parameters, with torchvision's module names.

`load_trained_digits_resnet(seed)` trains it on the training split on first use (a few seconds
on two cores, fixed seed) and caches the weights with their accuracies under the hwq cache
directory (`$HWQ_CACHE_DIR`, default `platformdirs.user_cache_dir("hwq")`), keyed by the recipe
and the environment (torch version, machine), trained on one intra-op thread (the same bits
whatever the thread count), and written under a temporary name and renamed while holding the
entry's lock (`hwq.cache.locked`), so two processes training at once train once and a second use
is a file load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hwq.cache import cache_dir
from hwq.models.cached_training import trained_state
from hwq.models.resnet import BasicBlock, conv1x1, conv3x3

log = logging.getLogger("hwq.models.digits")

NUM_CLASSES = 10

# The training recipe; any change gives a new cache key, so stale weights are never loaded.
RECIPE: dict[str, Any] = {
    "arch": "digits_resnet-v1",
    "data": "sklearn-digits-60/20/20-seed0",
    "epochs": 40,
    "batch_size": 64,
    "optimizer": "sgd",
    "lr": 0.2,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "onecycle-0.15",
    "augment": "shift1",
    "threads": 1,  # one intra-op thread: the same weights on every machine and in every process
}


class DigitsResNet(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 16) -> None:
        super().__init__()
        self.conv1 = conv3x3(1, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(width, width))
        down = nn.Sequential(conv1x1(width, 2 * width, 2), nn.BatchNorm2d(2 * width))
        self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, 2, down))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def digits_resnet(pretrained: bool = False, seed: int = 0) -> DigitsResNet:
    """The zoo factory. `pretrained=True` returns the trained, cached weights of `seed`."""
    if pretrained:
        return load_trained_digits_resnet(seed)[0]
    return DigitsResNet()


# -- cache -----------------------------------------------------------------------------------------
def environment() -> dict[str, str]:
    """What besides the recipe decides the trained bits: the torch build and the machine
    architecture (its kernels' float rounding)."""
    import platform

    return {"torch": str(torch.__version__), "machine": platform.machine()}


def recipe_key() -> str:
    """The cache key: the recipe and the environment (`environment()`); any change gives a new
    key, so weights trained elsewhere or otherwise are never loaded."""
    text = json.dumps({"recipe": RECIPE, "environment": environment()}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_path(seed: int = 0) -> Path:
    return cache_dir() / "models" / f"digits_resnet-seed{int(seed)}-{recipe_key()}.pt"


_MEMO: dict[tuple[str, int], tuple[dict[str, Tensor], dict[str, Any]]] = {}


def load_trained_digits_resnet(seed: int = 0) -> tuple[DigitsResNet, dict[str, Any]]:
    """(model in eval mode, info) for the trained `digits_resnet` of `seed`.

    `info`: model, seed, recipe_key, fp32_val_accuracy, fp32_test_accuracy, train_wall_s,
    cache_file. Trains and caches on first use; later uses load the cached file.
    """
    seed = int(seed)
    path = cache_path(seed)
    key = (str(path), seed)
    if key not in _MEMO:
        state = trained_state(path, recipe_key(), lambda: _train(seed), "digits_resnet", seed)
        _MEMO[key] = (state["state_dict"], dict(state["info"]))
    state_dict, info = _MEMO[key]
    model = DigitsResNet()
    model.load_state_dict(state_dict)
    info = dict(info, cache_file=str(path))
    return model.eval(), info



# -- training --------------------------------------------------------------------------------------
def _shift(x: Tensor, gen: torch.Generator) -> Tensor:
    """Random translation by up to one pixel (zero-padded), per image."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (1, 1, 1, 1), value=float(x.min()))
    dx = torch.randint(0, 3, (n,), generator=gen)
    dy = torch.randint(0, 3, (n,), generator=gen)
    out = torch.empty_like(x)
    for i in range(3):
        for j in range(3):
            sel = (dy == i) & (dx == j)
            if sel.any():
                out[sel] = padded[sel, :, i : i + 8, j : j + 8]
    return out


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> float:
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(y), 1)


def _train(seed: int) -> dict[str, Any]:
    from hwq.data import load_digits_splits

    t0 = time.perf_counter()
    data = load_digits_splits()
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsResNet()
    epochs, bs = RECIPE["epochs"], RECIPE["batch_size"]
    opt = torch.optim.SGD(
        model.parameters(),
        lr=RECIPE["lr"],
        momentum=RECIPE["momentum"],
        weight_decay=RECIPE["weight_decay"],
        nesterov=True,
    )
    x_train, y_train = data.train.x, data.train.y
    steps_per_epoch = (len(y_train) + bs - 1) // bs
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=RECIPE["lr"], total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y_train), generator=gen)
        for i in range(0, len(y_train), bs):
            idx = perm[i : i + bs]
            xb = _shift(x_train[idx], gen)
            loss = loss_fn(model(xb), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    info = {
        "model": "digits_resnet",
        "seed": seed,
        "recipe_key": recipe_key(),
        "fp32_val_accuracy": evaluate_accuracy(model, data.val.x, data.val.y),
        "fp32_test_accuracy": evaluate_accuracy(model, data.test.x, data.test.y),
        "train_wall_s": time.perf_counter() - t0,
    }
    log.info(
        "digits_resnet seed %d: test accuracy %.4f in %.1f s",
        seed,
        info["fp32_test_accuracy"],
        info["train_wall_s"],
    )
    return {"recipe_key": recipe_key(), "state_dict": model.state_dict(), "info": info}
