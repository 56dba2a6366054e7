"""Small DDP experiments that chapter 11 and its tests launch with torchrun (gloo on the CPU).

    torchrun --standalone --nproc_per_node=N -m torchbook.ddp_check whoami OUT.json
    torchrun --standalone --nproc_per_node=N -m torchbook.ddp_check shards OUT.json IMAGES EPOCHS
    torchrun --standalone --nproc_per_node=N -m torchbook.ddp_check steps OUT.pt BATCH STEPS
    torchrun --standalone --nproc_per_node=N -m torchbook.ddp_check speed OUT.json BATCH STEPS

`shards`: every rank records the dataset indices its DistributedSampler gives it, epoch by
epoch; rank 0 writes them all. `steps`: DDP training of a small CNN, without and with
BatchNorm, on fixed random images for STEPS steps of global batch BATCH (BATCH / N per rank);
rank 0 writes both models' weights. `whoami`: rank 0 writes every rank's RANK, LOCAL_RANK,
WORLD_SIZE and an all-reduced sum. `speed`: images per second of ResNet-20 training steps of
global batch BATCH on random 32x32 images (the median of STEPS steps), over all ranks.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torchbook import distributed as ddp
from torchbook.models import resnet


def shards(out: str, images: int, epochs: int) -> None:
    """Record the indices each rank sees per epoch; rank 0 writes [epoch][rank] lists."""
    dataset = TensorDataset(torch.arange(images))
    sampler = ddp.distributed_sampler(dataset, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=4, sampler=sampler)
    seen = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        seen.append(ddp.gather_objects([i for (batch,) in loader for i in batch.tolist()]))
    if ddp.is_main_process():
        with open(out, "w") as file:
            json.dump(seen, file)


def small_cnn(batchnorm: bool) -> nn.Module:
    """Two 3x3 convolutions (optionally with BatchNorm) and a linear layer, for 8x8 images."""
    norm = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), norm(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), norm(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))


def train_steps(batch: int, count: int, batchnorm: bool) -> nn.Module:
    """Train `count` steps of global batch `batch` on fixed random data; the trained model."""
    torch.manual_seed(0)
    images, labels = torch.randn(batch * count, 3, 8, 8), torch.randint(0, 2, (batch * count,))
    model = small_cnn(batchnorm)
    if ddp.is_distributed():
        model = ddp.wrap_ddp(model, torch.device("cpu"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    dataset = TensorDataset(images, labels)
    loader = DataLoader(dataset, batch_size=batch // ddp.world_size(),
                        sampler=ddp.distributed_sampler(dataset, seed=0))
    for x, y in loader:  # each rank: its share of every batch
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()  # DDP averages the gradients
        optimizer.step()
    return ddp.unwrap(model)


def steps(out: str, batch: int, count: int) -> None:
    """Train the small CNN without and with BatchNorm; rank 0 saves {kind: state_dict}."""
    weights = {kind: train_steps(batch, count, kind == "bn").state_dict()
               for kind in ("plain", "bn")}
    if ddp.is_main_process():
        torch.save(weights, out)


def whoami(out: str) -> None:
    """Rank 0 writes what each rank was told by torchrun, and a sum over ranks."""
    me = {name: os.environ[name] for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    total = ddp.all_reduce_sum([ddp.rank() + 1])[0]
    everyone = ddp.gather_objects(me)
    if ddp.is_main_process():
        with open(out, "w") as file:
            json.dump({"ranks": everyone, "sum": total}, file)


def images_per_second(batch: int, count: int) -> float:
    """Images per second of ResNet-20 steps of global batch `batch` (split over the ranks).

    Two warm-up steps, then `count` timed ones; the median step time counts, so that a moment
    when another program took the CPU does not.
    """
    torch.manual_seed(0)
    local = batch // ddp.world_size()
    images, labels = torch.randn(local, 3, 32, 32), torch.randint(0, 2, (local,))
    model = resnet(20, num_classes=2)
    if ddp.is_distributed():
        model = ddp.wrap_ddp(model, torch.device("cpu"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    seconds = []
    for _ in range(count + 2):
        ddp.barrier()
        start = time.perf_counter()
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()  # the all-reduce too
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    return batch / statistics.median(seconds[2:])


def speed(out: str, batch: int, count: int) -> None:
    """Time the ResNet-20 steps on every rank; rank 0 writes the images per second."""
    value = images_per_second(batch, count)
    if ddp.is_main_process():
        with open(out, "w") as file:
            json.dump({"processes": ddp.world_size(), "threads": torch.get_num_threads(),
                       "images_per_second": value}, file)


def main(argv: list[str]) -> None:
    """Join the group torchrun made, run one task, leave the group."""
    ddp.init_from_torchrun("cpu")
    try:
        task, out, *rest = argv
        if task == "shards":
            shards(out, int(rest[0]), int(rest[1]))
        elif task == "steps":
            steps(out, int(rest[0]), int(rest[1]))
        elif task == "speed":
            speed(out, int(rest[0]), int(rest[1]))
        else:
            whoami(out)
        ddp.barrier()
    finally:
        ddp.cleanup()


if __name__ == "__main__":
    main(sys.argv[1:])
