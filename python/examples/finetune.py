"""Finetune an opq plan with DistributedDataParallel (OPQ Algorithm 1: stage 1 pruned only,
stage 2 pruned + quantized; masks and steps fixed; SGD with momentum), then export the
squashed ONNX for ``opq compress finetuned.onnx --plan plan.safetensors``.

    torchrun --nproc_per_node 2 python/examples/finetune.py --arch lenet5 \
        --onnx lenet5-fmnist.onnx --plan plan.safetensors --epochs 1 --out finetuned.onnx

gloo on CPU, nccl when CUDA is available (one GPU per process: LOCAL_RANK). Runs as a single
process too (no torchrun). Rank 0 prints progress to stderr, evaluates test top-1 with the
exported weights and, with ``--json``, writes the figures to that file.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opq_torch  # noqa: E402
from fmnist_models import ARCHS, load_fashion_mnist  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=sorted(ARCHS), required=True)
    p.add_argument("--onnx", required=True, help="the FP32 ONNX the plan was made from (its weights start the finetuning)")
    p.add_argument("--plan", required=True, help="opq plan model.onnx -o plan.safetensors")
    p.add_argument("--out", required=True, help="the finetuned ONNX to write (squashed M ∘ Q(W))")
    p.add_argument("--data", default=os.path.join(os.environ.get("OPQ_SHARED", "../shared"), "data", "fashion-mnist"))
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the training set (fractions allowed); stage 1 takes the first --stage1 of the steps")
    p.add_argument("--stage1", type=float, default=0.5, help="fraction of steps in stage 1 (pruned only); the rest is stage 2")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--batch", type=int, default=128, help="global batch (split over the processes)")
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default=None, help="write the figures (top-1, seconds, steps) to this file")
    return p.parse_args(argv)


def evaluate(model, x, y, batch=1000):
    model.eval()
    with torch.no_grad():
        correct = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item() for i in range(0, len(x), batch))
    return correct / len(x)


def main(argv=None):
    a = parse_args(argv)
    distributed = "WORLD_SIZE" in os.environ
    cuda = torch.cuda.is_available()
    if distributed:
        dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    log = (lambda *s: print(*s, file=sys.stderr, flush=True)) if rank == 0 else (lambda *s: None)
    torch.manual_seed(a.seed)

    model = ARCHS[a.arch]()
    opq_torch.load_onnx_weights(model, a.onnx)
    plan = opq_torch.load_plan(a.plan)
    mapping = opq_torch.apply_plan(model, plan, quantize=False)
    model.to(device)
    log(f"plan {a.plan}: {len(mapping)} layers, {sum(l.kept for l in plan.layers)} kept weights; {world} process(es) on {device.type}")
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None) if distributed else model

    x, y = load_fashion_mnist(a.data, "train", a.limit)
    per_rank = max(1, a.batch // world)
    steps_per_epoch = len(x) // (per_rank * world)
    steps = max(1, math.ceil(a.epochs * steps_per_epoch))
    stage1_steps = round(a.stage1 * steps)
    opt = torch.optim.SGD(ddp.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
    g = torch.Generator().manual_seed(a.seed)  # the same order on every rank; each takes its slice
    t0, order, pos, epoch = time.time(), None, 0, 0
    for step in range(steps):
        if step == stage1_steps or step == 0:
            opq_torch.set_stage(model, 1 if step < stage1_steps else 2)
        if order is None or pos + per_rank * world > len(x):
            order, pos, epoch = torch.randperm(len(x), generator=g), 0, epoch + 1
        idx = order[pos + rank * per_rank: pos + (rank + 1) * per_rank]
        pos += per_rank * world
        ddp.train()
        loss = F.cross_entropy(ddp(x[idx].to(device)), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if rank == 0 and (step % 50 == 0 or step == steps - 1):
            log(f"step {step + 1}/{steps} stage {1 if step < stage1_steps else 2} loss {loss.item():.4f} {time.time() - t0:.1f}s")
    train_seconds = time.time() - t0
    if distributed:
        dist.barrier()
    if rank == 0:
        opq_torch.export(model, a.out, torch.zeros(1, 1, 28, 28))
        xt, yt = load_fashion_mnist(a.data, "t10k")
        top1 = evaluate(opq_torch.squashed(model), xt, yt)
        log(f"trained {steps} steps ({steps * per_rank * world} images, {world} process(es)) in {train_seconds:.1f}s; test top-1 {100 * top1:.2f}%; wrote {a.out}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"top1": top1, "train_seconds": train_seconds, "steps": steps, "images": steps * per_rank * world,
                           "world_size": world, "backend": dist.get_backend() if distributed else None, "stage1_steps": stage1_steps}, f)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
