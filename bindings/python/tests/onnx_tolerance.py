"""How far two float32 evaluations of one ONNX model may differ, derived from the model's
arithmetic (the Python twin of ``core/sdk/tests/support/mod.rs``'s ``Tolerance``; the reasoning
is written there).

In short: a float32 sum of ``n`` terms, in any order, with or without fused multiply-add, is within
``gamma(n) * sum |term|`` of the exact sum (``gamma(n) = nU / (1 - nU)``, ``U = 2**-24``). Carried
through the graph, every logit ``i`` is within ``E_i = gamma(N) * A_i`` of the exact one, where
``N`` counts the roundings along the graph and ``A`` is the logit of the *absolute-value
network* (every weight made ``|w|``, fed ``|x|``), which ONNX Runtime computes; for a tree
ensemble ``N`` is the number of trees plus one and ``A`` is read off the leaf weights. A softmax
or a logistic after the logits turns a logit difference ``D`` into a relative one of
``e^(2D) - 1`` or ``e^D - 1``, plus its own few roundings.

``sides``: 2 for two float32 evaluations (the SDK and ONNX Runtime), 1 for one float32 evaluation
against an exact (float64) computation of the same function, such as scikit-learn's own
``predict_proba`` of the model the file was exported from. A model whose weights were rounded to
float32 on export (scikit-learn keeps float64) adds one rounding per term: ``weights_rounded``.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

U = 2.0**-24
# Roundings budgeted for one elementwise function (exp, tanh, sigmoid) in the runtimes compared.
FN_ROUNDINGS = 4.0


def gamma(n: float) -> float:
    return n * U / (1.0 - n * U)


def _attr(node: onnx.NodeProto, name: str, default=None):  # type: ignore[no-untyped-def]
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _text(v) -> str:  # type: ignore[no-untyped-def]
    return v.decode() if isinstance(v, bytes) else str(v)


class Tolerance:
    """The bound for output ``output`` of the ONNX model ``onnx_bytes``."""

    def __init__(self, onnx_bytes: bytes, output: str, sides: int = 2, weights_rounded: bool = False) -> None:
        self.sides = sides
        model = onnx.load_from_string(onnx_bytes)
        trees = [n for n in model.graph.node if n.op_type in ("TreeEnsembleClassifier", "TreeEnsembleRegressor")]
        self.normalized = False
        self._session = None
        if trees:
            self._trees(trees[0])
        else:
            self._graph(model, output)
        if weights_rounded:
            self.roundings += 1.0

    # -- tree ensembles: magnitudes from the attributes ------------------------------------
    def _trees(self, node: onnx.NodeProto) -> None:
        votes = "target" if node.op_type == "TreeEnsembleRegressor" else "class"
        trees = _attr(node, f"{votes}_treeids", [])
        ids = _attr(node, f"{votes}_ids", [])
        weights = _attr(node, f"{votes}_weights", [])
        base = _attr(node, "base_values", []) or []
        average = _text(_attr(node, "aggregate_function", "SUM")) == "AVERAGE"
        classes = max(ids) + 1 if len(ids) else 0
        per_tree: dict[tuple[int, int], float] = {}
        for t, c, w in zip(trees, ids, weights):
            per_tree[(t, c)] = max(per_tree.get((t, c), 0.0), abs(w))
        n_trees = len(set(trees))
        share = n_trees if average else 1
        magnitude = np.array([abs(base[c]) if c < len(base) else 0.0 for c in range(classes)])
        for (_, c), m in per_tree.items():
            magnitude[c] += m / share
        self._magnitude = magnitude
        self.roundings = n_trees + 1.0 + float(average)
        post = _text(_attr(node, "post_transform", "NONE"))
        self.head = {"NONE": "none", "LOGISTIC": "sigmoid", "SOFTMAX": "softmax", "SOFTMAX_ZERO": "softmax"}[post]

    # -- graphs: the absolute-value network on ONNX Runtime --------------------------------
    def _graph(self, model: onnx.ModelProto, output: str) -> None:
        g = model.graph
        producer = {o: n for n in g.node for o in n.output}
        logits, head, normalized = output, "none", False
        queue = [output]
        while queue:
            n = producer.get(queue.pop())
            if n is None:
                continue
            if n.op_type in ("Softmax", "Sigmoid"):
                logits, head = n.input[0], n.op_type.lower()
                break
            if n.op_type == "LinearClassifier":
                logits = n.output[1]
                post = _text(_attr(n, "post_transform", "NONE"))
                head = {"NONE": "none", "LOGISTIC": "sigmoid", "SOFTMAX": "softmax"}[post]
                break
            if n.op_type == "Normalizer":
                assert _text(_attr(n, "norm", "MAX")) == "L1", "no error bound for this Normalizer"
                normalized = True
            queue.extend(n.input)
        wanted, needed = {logits}, []
        for n in reversed(list(g.node)):
            if any(o in wanted for o in n.output):
                needed.append(n)
                wanted.update(n.input)
        needed.reverse()
        inits = {t.name: t for t in g.initializer}

        def dims(name: str) -> list[int]:
            assert name in inits, f"no error bound for an operator with a computed operand ({name})"
            return list(inits[name].dims)

        roundings, negate, probes, nodes = 0.0, set(), [], []
        for n in needed:
            n2 = onnx.NodeProto()
            n2.CopyFrom(n)
            op = n.op_type
            if op == "Conv":
                roundings += float(np.prod(dims(n.input[1])[1:])) + 1
            elif op == "Gemm":
                w = dims(n.input[1])
                roundings += (w[1] if _attr(n, "transB", 0) == 1 else w[0]) + 3
            elif op == "MatMul":
                roundings += dims(n.input[1])[-2]
            elif op == "AveragePool":
                roundings += float(np.prod(_attr(n, "kernel_shape"))) + 1
            elif op in ("Add", "Sub", "Mul", "Div", "LeakyRelu"):
                roundings += 1
            elif op == "BatchNormalization":
                roundings += 6
                negate.add(n.input[3])
            elif op in ("Sigmoid", "Tanh"):
                roundings += FN_ROUNDINGS
            elif op == "LinearClassifier":
                k = len(_attr(n, "coefficients")) // max(1, len(_attr(n, "intercepts")))
                roundings += k + 1
            elif op == "Scaler":
                roundings += 2
            elif op == "GlobalAveragePool":
                probes.append(n.input[0])
            elif op == "Clip":
                # 1-Lipschitz, and |clip(z)| <= |z| when its range holds 0: Identity bounds it.
                for i in n.input[1:]:
                    v = float(numpy_helper.to_array(inits[i])) if i in inits else 0.0
                    assert (v <= 0) if i == n.input[1] else (v >= 0), "no error bound for this Clip"
                n2.op_type = "Identity"
                del n2.input[1:]
            elif op not in ("Relu", "MaxPool", "GlobalMaxPool", "Identity", "Dropout", "Flatten", "Reshape",
                            "Cast", "Concat", "Squeeze", "Unsqueeze"):
                raise AssertionError(f"no error bound for operator {op}")
            # The absolute-value stand-ins (see the Rust twin for why each bounds the original).
            if op == "Sub":
                n2.op_type = "Add"
            elif op in ("LeakyRelu", "Tanh"):
                assert op == "Tanh" or abs(_attr(n, "alpha", 0.01)) <= 1.0
                n2.op_type = "Identity"
                del n2.attribute[:]
            elif op == "Sigmoid":
                n2.op_type = "Softplus"
            elif op in ("LinearClassifier", "Scaler"):
                del n2.attribute[:]
                for a in n.attribute:
                    v = helper.get_attribute_value(a)
                    if a.name in ("coefficients", "intercepts", "scale"):
                        n2.attribute.append(helper.make_attribute(a.name, [abs(x) for x in v]))
                    elif a.name == "offset":
                        n2.attribute.append(helper.make_attribute(a.name, [-abs(x) for x in v]))
                    elif a.name != "post_transform":
                        n2.attribute.append(a)
            nodes.append(n2)
        new_inits = []
        for t in g.initializer:
            if t.data_type == onnx.TensorProto.FLOAT:
                a = np.abs(numpy_helper.to_array(t))
                t = numpy_helper.from_array(-a if t.name in negate else a, t.name)
            new_inits.append(t)
        outs = [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in [logits, *probes]]
        graph = helper.make_graph(nodes, "abs", list(g.input), outs, new_inits)
        abs_model = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self._session = ort.InferenceSession(abs_model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self._probes = len(probes)
        self.roundings = roundings
        self.head = head
        self.normalized = normalized

    def bound(self, x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per element of ``a`` and ``b`` (``rows x outputs``), how far two evaluations of the
        model on ``x`` (``rows x ...``, the model's input shape) may differ."""
        a = np.asarray(a, dtype=np.float64).reshape(len(x), -1)
        b = np.asarray(b, dtype=np.float64).reshape(len(x), -1)
        roundings = self.roundings
        if self._session is not None:
            name = self._session.get_inputs()[0].name
            results = self._session.run(None, {name: np.abs(np.asarray(x, dtype=np.float32))})
            magnitude = np.asarray(results[0], dtype=np.float64).reshape(len(x), -1)
            # The global average pools' lengths, from the shapes they ran on.
            roundings += sum(float(np.prod(r.shape[2:])) + 1 for r in results[1:])
        else:
            magnitude = np.tile(self._magnitude, (len(x), 1))
        s = float(self.sides)
        e = s / 2 * gamma(roundings) * magnitude
        d = 2 * e.max(axis=1, keepdims=True)
        p = np.maximum(np.abs(a), np.abs(b))
        classes = magnitude.shape[1]
        if self.head == "softmax":
            out = p * (np.expm1(2 * d) + s * (FN_ROUNDINGS + classes + 2) * U)
        elif self.head == "sigmoid":
            out = p * np.expm1(d) + s * (FN_ROUNDINGS + 2) * U
        elif magnitude.shape == a.shape:
            out = 2 * e + s * U * p
        else:
            out = np.broadcast_to(d + s * U, a.shape)
        if self.normalized:
            out = 2 * out + s * classes * U * p
        return out


def assert_within(x: np.ndarray, ours: np.ndarray, theirs: np.ndarray, tolerance: Tolerance, what: str) -> None:
    """Every element of ``ours`` within ``tolerance``'s bound of ``theirs``, NaN matching NaN."""
    ours = np.asarray(ours, dtype=np.float64).reshape(len(x), -1)
    theirs = np.asarray(theirs, dtype=np.float64).reshape(len(x), -1)
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    bound = tolerance.bound(x, ours, theirs)
    diff = np.abs(ours - theirs)
    same = (ours == theirs) | (np.isnan(ours) & np.isnan(theirs))
    bad = ~same & ~(diff <= bound)
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} values beyond the derived bound; worst diff "
        f"{float(np.nanmax(np.where(bad, diff, 0))):.3e} where the bound is "
        f"{float(bound[bad].min()):.3e}"
    )
