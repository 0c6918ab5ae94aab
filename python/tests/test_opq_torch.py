"""opq_torch unit tests: the plan reader on good and hostile files, node-name matching,
apply_plan's parametrization (exact M ∘ Q(W), straight-through gradient), squashing, and the
ONNX weight loader. Needs OPQ_PLAN (a LeNet-5 plan from `opq plan`) and the shared models
(OPQ_SHARED); run by compressor/torch.test.ts, or: OPQ_PLAN=… python3 -m unittest discover python/tests"""
import json
import os
import struct
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "examples")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import opq_torch  # noqa: E402
from opq_torch import PlanError  # noqa: E402
from fmnist_models import LeNet5, ResNet20  # noqa: E402

PLAN_PATH = os.environ.get("OPQ_PLAN")
SHARED = os.environ.get("OPQ_SHARED", os.path.join(HERE, "..", "..", "..", "shared"))


def split(b: bytes):
    (n,) = struct.unpack_from("<Q", b, 0)
    return json.loads(b[8:8 + n]), b[8 + n:]


def join(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


class PlanReader(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not PLAN_PATH:
            raise RuntimeError("set OPQ_PLAN to a LeNet-5 plan (bun cli/main.ts plan lenet5-fmnist.onnx -o plan.safetensors)")
        with open(PLAN_PATH, "rb") as f:
            cls.bytes = f.read()
        cls.plan = opq_torch.load_plan(cls.bytes)

    def code(self, b: bytes) -> str:
        with self.assertRaises(PlanError) as cm:
            opq_torch.load_plan(b)
        return cm.exception.code

    def test_reads_the_plan(self):
        p = self.plan
        self.assertEqual([l.name for l in p.layers], ["c1.weight", "c2.weight", "f1.weight", "f2.weight", "f3.weight"])
        self.assertEqual(p.layers[0].node, "/c1/Conv")
        self.assertEqual(len(p.model_sha256), 64)
        for l in p.layers:
            self.assertEqual(l.mask.shape, l.dims)
            self.assertEqual(int(l.mask.sum()), l.kept)
            self.assertEqual(l.codebook, "uniform")
            self.assertGreater(l.step, 0)
        self.assertAlmostEqual(p.options["sparsity"], 0.74)

    def test_hostile(self):
        b = self.bytes
        header, data = split(b)
        mask = header["f2.weight.mask"]
        shorter = dict(header, **{"f2.weight.mask": dict(mask, shape=[mask["shape"][0] - 1], data_offsets=[mask["data_offsets"][0], mask["data_offsets"][1] - 1])})
        wrong_shape = dict(header, **{"c1.weight.step": dict(header["c1.weight.step"], shape=[2])})
        overlap = dict(header, **{"c1.weight.step": dict(header["c1.weight.step"], data_offsets=[0, 4])})
        cases = {
            "truncated (the last tensor runs past the end)": (b[:-3], "CORRUPT"),
            "truncated inside the length": (b[:6], "TRUNCATED"),
            "header larger than the file": (struct.pack("<Q", len(b)) + b[8:], "TRUNCATED"),
            "bad JSON": (struct.pack("<Q", 5) + b"{nope" + data, "CORRUPT"),
            "wrong shape for its bytes": (join(wrong_shape, data), "CORRUPT"),
            "overlapping offsets": (join(overlap, data), "CORRUPT"),
            # Only the header shortened: the container catches the byte left over (a hole); the
            # next test shortens the bytes too, so that the plan layer must catch it.
            "mask of the wrong length (header only)": (join(shorter, data), "CORRUPT"),
            "not a plan": (join(dict(header, __metadata__=dict(header["__metadata__"], format="x")), data), "BAD_MAGIC"),
            "a newer plan": (join(dict(header, __metadata__=dict(header["__metadata__"], plan_version="9")), data), "UNSUPPORTED_VERSION"),
        }
        for what, (bad, code) in cases.items():
            with self.subTest(what):
                self.assertEqual(self.code(bad), code)

    def _msg(self, b):
        try:
            opq_torch.load_plan(b)
        except PlanError as e:
            return e
        return None

    def test_mask_of_the_wrong_length_in_a_valid_container(self):
        header, data = split(self.bytes)
        # Rebuild the container with f2's mask one byte short, offsets re-tiled.
        tensors = sorted(((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0])
        out, new_header, pos = b"", {"__metadata__": header["__metadata__"]}, 0
        for k, v in tensors:
            b0, b1 = v["data_offsets"]
            chunk = data[b0:b1][:-1] if k == "f2.weight.mask" else data[b0:b1]
            shape = [len(chunk)] if k == "f2.weight.mask" else v["shape"]
            new_header[k] = {"dtype": v["dtype"], "shape": shape, "data_offsets": [pos, pos + len(chunk)]}
            out, pos = out + chunk, pos + len(chunk)
        e = self._msg(join(new_header, out))
        self.assertIsNotNone(e)
        self.assertEqual(e.code, "CORRUPT")
        self.assertIn("f2.weight: mask of shape", str(e))


class Matching(unittest.TestCase):
    def test_module_path_of_node(self):
        f = opq_torch.module_path_of_node
        self.assertEqual(f("/c1/Conv"), "c1")
        self.assertEqual(f("/stem/stem.0/Conv"), "stem.0")
        self.assertEqual(f("/layers/layers.3/sc/sc.0/Conv"), "layers.3.sc.0")
        self.assertEqual(f("/layers/layers.0/c1/Conv"), "layers.0.c1")
        self.assertIsNone(f("Conv_3"))

    def test_resnet20_onnx_weights_load_by_node_path(self):
        m = ResNet20()
        mapping = opq_torch.load_onnx_weights(m, os.path.join(SHARED, "models", "resnet20-fmnist.onnx"))
        self.assertEqual(len(mapping), 44)
        self.assertEqual(mapping["onnx::Conv_230"], "layers.3.sc.0.weight")
        self.assertEqual(mapping["fc.weight"], "fc.weight")

    def test_unmatched_names_every_layer(self):
        if not PLAN_PATH:
            self.skipTest("OPQ_PLAN not set")  # PlanReader fails loudly for the same reason
        plan = opq_torch.load_plan(PLAN_PATH)
        m = LeNet5()
        m.c1 = torch.nn.Conv2d(1, 6, 3)       # wrong shape
        del m.f3                               # missing
        with self.assertRaises(PlanError) as cm:
            opq_torch.apply_plan(m, plan)
        e = cm.exception
        self.assertEqual(e.code, "UNMATCHED")
        self.assertIn("c1.weight: parameter c1.weight has shape [6, 1, 3, 3], the plan [6, 1, 5, 5]", str(e))
        self.assertIn("f3.weight (node /f3/Gemm, [10, 84]): no parameter named f3.weight", str(e))
        self.assertIn("2 plan layer(s)", str(e))
        # An explicit mapping fixes a renamed parameter.
        m2 = LeNet5()
        opq_torch.load_onnx_weights(m2, os.path.join(SHARED, "models", "lenet5-fmnist.onnx"))
        m2.out = m2.f3
        del m2.f3
        self.assertEqual(opq_torch.apply_plan(m2, plan, names={"f3.weight": "out.weight"})["f3.weight"], "out.weight")

    def test_weights_that_are_not_the_planned_ones_are_refused(self):
        if not PLAN_PATH:
            self.skipTest("OPQ_PLAN not set")
        plan = opq_torch.load_plan(PLAN_PATH)
        with self.assertRaises(PlanError) as cm:
            opq_torch.apply_plan(LeNet5(), plan)  # random init
        self.assertEqual(cm.exception.code, "WEIGHTS_DIFFER")
        self.assertEqual(str(cm.exception).count("disagree"), 5)
        m = LeNet5()
        opq_torch.load_onnx_weights(m, os.path.join(SHARED, "models", "lenet5-fmnist.onnx"))
        with torch.no_grad():  # an unfolded BatchNorm: per-channel scales
            m.c2.weight.mul_(torch.linspace(0.5, 2, 16).view(16, 1, 1, 1))
        with self.assertRaises(PlanError) as cm:
            opq_torch.apply_plan(m, plan)
        self.assertIn("c2.weight → c2.weight", str(cm.exception))
        self.assertNotIn("c1.weight →", str(cm.exception))


class Parametrization(unittest.TestCase):
    def setUp(self):
        if not PLAN_PATH:
            self.skipTest("OPQ_PLAN not set")
        self.plan = opq_torch.load_plan(PLAN_PATH)
        self.model = LeNet5()
        opq_torch.load_onnx_weights(self.model, os.path.join(SHARED, "models", "lenet5-fmnist.onnx"))
        self.w0 = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        opq_torch.apply_plan(self.model, self.plan)

    def test_forward_is_exactly_m_q_w(self):
        for l in self.plan.layers:
            owner = getattr(self.model, l.name.split(".")[0])
            w_hat = owner.weight.detach()
            step = torch.tensor(l.step, dtype=torch.float32)
            expect = torch.from_numpy(l.mask.astype(np.float32)) * (step * torch.round(self.w0[l.name] / step))
            self.assertTrue(torch.equal(w_hat, expect), l.name)
            self.assertFalse(w_hat[~torch.from_numpy(l.mask)].any())
            # +0.0, never −0.0, where Ŵ is zero: opq decodes zeros as +0.0 (bit-exact hand-back).
            self.assertFalse(torch.signbit(w_hat[w_hat == 0]).any(), l.name)

    def test_stage_1_is_masked_only_and_gradients_are_masked(self):
        opq_torch.set_stage(self.model, 1)
        l = self.plan.layers[0]
        mask = torch.from_numpy(l.mask)
        self.assertTrue(torch.equal(self.model.c1.weight.detach(), self.w0["c1.weight"] * mask))
        opq_torch.set_stage(self.model, 2)
        self.model(torch.randn(4, 1, 28, 28)).sum().backward()
        g = self.model.c1.parametrizations.weight.original.grad
        self.assertFalse(g[~mask].any())
        self.assertTrue(g[mask].abs().sum() > 0)

    def test_squashed_copy_leaves_the_model_working(self):
        sq = opq_torch.squashed(self.model)
        self.assertFalse(torch.nn.utils.parametrize.is_parametrized(sq.c1))
        self.assertTrue(torch.equal(sq.c1.weight, self.model.c1.weight.detach()))
        x = torch.randn(2, 1, 28, 28)
        self.assertTrue(torch.equal(sq(x), self.model(x).detach()))


class OnnxReader(unittest.TestCase):
    def test_hostile_onnx(self):
        with open(os.path.join(SHARED, "models", "lenet5-fmnist.onnx"), "rb") as f:
            b = f.read()
        for bad in (b[:1000], b[:10]):
            with self.assertRaises(PlanError) as cm:
                opq_torch.read_onnx_graph(bad)
            self.assertIn(cm.exception.code, ("TRUNCATED", "CORRUPT", "BAD_MAGIC"))
        with self.assertRaises(PlanError) as cm:
            opq_torch.read_onnx_graph(b"\x08\x07")
        self.assertEqual(cm.exception.code, "BAD_MAGIC")


if __name__ == "__main__":
    unittest.main()
