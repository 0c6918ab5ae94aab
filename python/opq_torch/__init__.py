"""opq_torch: finetune an opq one-shot plan in PyTorch (DDP welcome) and hand it back bit-exact.

    plan = opq_torch.load_plan("plan.safetensors")        # from `opq plan model.onnx`
    opq_torch.apply_plan(model, plan)                      # Ŵ = M ∘ Q(W), straight-through
    ... train (stage 1: set_stage(model, 1), stage 2: set_stage(model, 2)) ...
    opq_torch.export(model, "finetuned.onnx", torch.zeros(1, 1, 28, 28))
    # then: opq compress finetuned.onnx --plan plan.safetensors -o model.opq
"""
from .apply import apply_plan, export, mask_disagreement, MaskQuant, match_plan, module_path_of_node, plan_parametrizations, set_stage, squashed
from .errors import PlanError
from .onnx_weights import load_onnx_weights, read_onnx_graph
from .plan import load_plan, Plan, PlanLayer
from .safetensors_io import read_safetensors

__version__ = "0.1.0"
__all__ = ["apply_plan", "export", "load_onnx_weights", "load_plan", "mask_disagreement", "MaskQuant", "match_plan", "module_path_of_node", "Plan",
           "PlanError", "PlanLayer", "plan_parametrizations", "read_onnx_graph", "read_safetensors", "set_stage", "squashed"]
