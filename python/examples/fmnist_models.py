"""LeNet-5 and ResNet-20 as the shared Fashion-MNIST ONNX files have them (BatchNorm folded
into the convs, so every conv has a bias), with the module paths their node names carry:
``/c1/Conv`` → ``c1``, ``/layers/layers.3/sc/sc.0/Conv`` → ``layers.3.sc.0``. Load the weights
with ``opq_torch.load_onnx_weights(model, "resnet20-fmnist.onnx")``. Also the Fashion-MNIST
IDX reader with the preprocessing the models were trained with."""
import gzip
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Training-time normalization of pixels in [0, 1] (models/README.md; cli/fashion-mnist.ts).
FMNIST_MEAN, FMNIST_STD = 0.286, 0.353


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)
        self.c2 = nn.Conv2d(6, 16, 5)
        self.f1 = nn.Linear(400, 120)
        self.f2 = nn.Linear(120, 84)
        self.f3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = torch.flatten(x, 1)
        return self.f3(F.relu(self.f2(F.relu(self.f1(x)))))


class Block(nn.Module):
    """Basic residual block; ``sc`` is the 1×1 stride-2 projection where the width changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride), nn.Identity()) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = self.c2(F.relu(self.c1(x)))
        return F.relu(y + (self.sc(x) if self.sc is not None else x))


class ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        # stem.1 was the BatchNorm, folded into stem.0.
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1), nn.Identity(), nn.ReLU())
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


ARCHS = {"lenet5": LeNet5, "resnet20": ResNet20}


def _idx(path, magic, rank):
    with gzip.open(path, "rb") as f:
        b = f.read()
    if len(b) < 4 + 4 * rank or struct.unpack_from(">I", b, 0)[0] != magic:
        raise ValueError(f"{path}: not an IDX file of rank {rank}")
    dims = struct.unpack_from(f">{rank}I", b, 4)
    data = np.frombuffer(b, np.uint8, offset=4 + 4 * rank)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} bytes for dims {dims}")
    return data.reshape(dims)


def load_fashion_mnist(data_dir, split="train", limit=None):
    """``(x, y)``: float32 [N, 1, 28, 28] normalized as in training, int64 labels."""
    px = _idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"), 0x803, 3)[:limit]
    y = _idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"), 0x801, 1)[:limit]
    # float64 arithmetic then one rounding, exactly as opq's normalizePixels.
    x = ((px.astype(np.float64) / 255 - FMNIST_MEAN) / FMNIST_STD).astype(np.float32)
    return torch.from_numpy(x[:, None]), torch.from_numpy(y.astype(np.int64))
