"""The package's one error class, with the same codes as opq's TypeScript FormatError/CompressError."""


class PlanError(Exception):
    """A plan, model or ONNX file opq_torch cannot use. Branch on ``err.code``, never the message.

    Codes: ``TRUNCATED`` (the bytes end before a declared length), ``TOO_LARGE`` (a header over
    the limit), ``CORRUPT`` (bad JSON, shapes, offsets, masks), ``UNSUPPORTED`` (a dtype or
    feature this reader does not handle), ``BAD_MAGIC`` (not an opq plan / not ONNX),
    ``UNSUPPORTED_VERSION``, ``UNMATCHED`` (plan layers without a matching module parameter),
    ``WEIGHTS_DIFFER`` (the module's weights are not the ones the plan was made from).
    """

    def __init__(self, code: str, message: str):
        super().__init__(f"[{code}] {message}")
        self.code = code


def check(cond: object, code: str, message: str) -> None:
    """Raise PlanError(code, message) unless ``cond`` holds."""
    if not cond:
        raise PlanError(code, message)
