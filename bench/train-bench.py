"""Peer of bench/train-bench.ts: the same graph (read from a JSON description the bench writes)
trained by PyTorch on the CPU: forward, cross-entropy, backward, SGD (momentum 0.9, weight decay
1e-4), batch and thread count as given. Prints one JSON line: {"imagesPerSecond", "seconds", ...}."""
import json, sys, time
import torch
import torch.nn.functional as F

spec = json.load(open(sys.argv[1]))
batch, steps, threads = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
torch.manual_seed(0)
params = {name: torch.nn.Parameter(torch.randn(*dims) * 0.1) for name, dims in spec["params"].items()}
opt = torch.optim.SGD(params.values(), lr=0.001, momentum=0.9, weight_decay=1e-4)

def forward(x):
    env = {spec["input"]: x}
    val = lambda n: params[n] if n in params else env[n]
    for node in spec["nodes"]:
        op, ins, a = node["op"], node["inputs"], node["attrs"]
        if op == "Conv":
            p = a["pads"]
            y = F.conv2d(val(ins[0]), val(ins[1]), val(ins[2]) if len(ins) > 2 and ins[2] else None,
                         stride=tuple(a["strides"]), padding=(p[0], p[1]), groups=a.get("group", 1))
        elif op == "Relu": y = F.relu(val(ins[0]))
        elif op == "Add": y = val(ins[0]) + val(ins[1])
        elif op == "GlobalAveragePool": y = val(ins[0]).mean(dim=(2, 3), keepdim=True)
        elif op == "Flatten": y = torch.flatten(val(ins[0]), 1)
        elif op == "Gemm":
            w = val(ins[1])
            y = F.linear(val(ins[0]), w if a.get("transB", 0) else w.t(), val(ins[2]) if len(ins) > 2 else None)
        elif op == "MaxPool":
            y = F.max_pool2d(val(ins[0]), tuple(a["kernel_shape"]), tuple(a.get("strides", a["kernel_shape"])))
        else: raise SystemExit(f"op {op} not in the peer")
        env[node["outputs"][0]] = y
    return env[spec["output"]]

x = torch.randn(batch, *spec["inputDims"][1:])
labels = torch.randint(0, spec["classes"], (batch,))
def step():
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(forward(x), labels)
    loss.backward()
    opt.step()
for _ in range(2): step()  # warm-up
t0, c0 = time.perf_counter(), time.process_time()
for _ in range(steps): step()
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
# VmHWM, not getrusage: ru_maxrss survives fork + exec, so it would report the parent's peak.
hwm = next((int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")), 0)
print(json.dumps({"imagesPerSecond": batch * steps / dt, "imagesPerCpuSecond": batch * steps / cpu, "seconds": dt, "cpuSeconds": cpu, "threads": torch.get_num_threads(),
                  "torch": torch.__version__, "peakRssMB": hwm / 1024}))
