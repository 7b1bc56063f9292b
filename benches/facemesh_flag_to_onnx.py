#!/usr/bin/env python3
"""MediaPipe's face landmark model (face_landmark.tflite, Apache-2.0) cut to its face-presence
branch and written as ONNX that Debian's OpenCV 4.6 dnn reads: models/mediapipe_face_presence.onnx,
the faces stage's face-presence score (src/faces/presence.rs; issue 36, a verifier whose errors are
not YuNet's). Input `image`, 1 x 3 x 192 x 192 RGB in [0, 1]; output `face_presence`, the logit.

The tflite weights are float16 behind DEQUANTIZE ops: they are widened to float32, NHWC kernels
become NCHW, TF's SAME padding becomes explicit (asymmetric) pads, and only the ops the presence
output needs are kept (the 468 landmarks' head is dropped). Needs the PyPI packages onnx and tflite:

    pip download --no-deps mediapipe==0.10.9     # the wheel ships mediapipe/modules/face_landmark/face_landmark.tflite
    unzip -j mediapipe-0.10.9-*.whl mediapipe/modules/face_landmark/face_landmark.tflite
    python3 benches/facemesh_flag_to_onnx.py face_landmark.tflite models/mediapipe_face_presence.onnx

Checked against the tflite interpreter (ai-edge-litert) on random and photo crops: the same logits
within 5e-6, through cv2 4.6 and 4.10 alike.
"""
import sys
import numpy as np
import onnx
import tflite
from onnx import helper, numpy_helper, TensorProto


def main(src, dst):
    buf = open(src, "rb").read()
    model = tflite.Model.GetRootAsModel(buf, 0)
    g = model.Subgraphs(0)
    names = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    tensor = lambda i: g.Tensors(i)
    shape = lambda i: [int(v) for v in tensor(i).ShapeAsNumpy()]

    def data(i):
        t = tensor(i)
        raw = model.Buffers(t.Buffer()).DataAsNumpy()
        dtype = {0: np.float32, 1: np.float16, 2: np.int32}[t.Type()]
        return np.frombuffer(raw.tobytes(), dtype=dtype).reshape(shape(i))

    ops = []
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        oc = model.OperatorCodes(op.OpcodeIndex())
        ops.append((names[max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())], op))
    producer = {int(o): k for k, (_, op) in enumerate(ops) for o in op.OutputsAsNumpy()}
    flag = next(int(o) for o in g.OutputsAsNumpy() if tensor(int(o)).Name() == b"conv2d_31")
    # The ops the flag needs, in order.
    needed, stack = set(), [flag]
    while stack:
        t = stack.pop()
        if t in producer and producer[t] not in needed:
            needed.add(producer[t])
            stack.extend(int(i) for i in ops[producer[t]][1].InputsAsNumpy() if i >= 0)
    consts = {}  # tensor -> float32 array (dequantized)
    nodes, inits = [], []
    inp = int(g.InputsAsNumpy()[0])
    # The graph's input and output by name; the tensors between by index.
    name = lambda i: "image" if i == inp else "face_presence" if i == flag else f"t{i}"

    def same_pads(i, o, k, s):
        (ih, iw), (oh, ow) = shape(i)[1:3], shape(o)[1:3]
        th, tw = max((oh - 1) * s + k[0] - ih, 0), max((ow - 1) * s + k[1] - iw, 0)
        return [th // 2, tw // 2, th - th // 2, tw - tw // 2]

    def init(arr, n):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr.astype(np.float32)), n))
        return n

    for k in sorted(needed):
        kind, op = ops[k]
        ins, outs = [int(i) for i in op.InputsAsNumpy()], [int(o) for o in op.OutputsAsNumpy()]
        opts = op.BuiltinOptions()
        if kind == "DEQUANTIZE":
            consts[outs[0]] = data(ins[0]).astype(np.float32)
        elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            o = tflite.Conv2DOptions() if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions()
            o.Init(opts.Bytes, opts.Pos)
            assert o.FusedActivationFunction() == 0 and o.DilationWFactor() == 1
            w = consts.get(ins[1], None)
            w = data(ins[1]).astype(np.float32) if w is None else w
            b = consts.get(ins[2], None)
            b = data(ins[2]).astype(np.float32) if b is None else b
            if kind == "CONV_2D":
                wo, group = w.transpose(0, 3, 1, 2), 1  # OHWI -> OIHW
            else:
                wo = w.transpose(3, 0, 1, 2)  # 1HWC -> C1HW
                group = wo.shape[0]
                assert o.DepthMultiplier() == 1
            ks, s = list(wo.shape[2:]), o.StrideH()
            pads = same_pads(ins[0], outs[0], ks, s) if o.Padding() == 0 else [0, 0, 0, 0]
            nodes.append(helper.make_node("Conv", [name(ins[0]), init(wo, f"w{k}"), init(b, f"b{k}")], [name(outs[0])],
                                          kernel_shape=ks, strides=[s, s], pads=pads, group=group))
        elif kind == "PRELU":
            a = consts.get(ins[1], None)
            a = data(ins[1]).astype(np.float32) if a is None else a
            a = a.reshape(-1)[:, None, None]
            nodes.append(helper.make_node("PRelu", [name(ins[0]), init(a, f"a{k}")], [name(outs[0])]))
        elif kind == "ADD":
            o = tflite.AddOptions(); o.Init(opts.Bytes, opts.Pos)
            assert o.FusedActivationFunction() == 0
            nodes.append(helper.make_node("Add", [name(ins[0]), name(ins[1])], [name(outs[0])]))
        elif kind == "MAX_POOL_2D":
            o = tflite.Pool2DOptions(); o.Init(opts.Bytes, opts.Pos)
            ks, s = [o.FilterHeight(), o.FilterWidth()], o.StrideH()
            pads = same_pads(ins[0], outs[0], ks, s) if o.Padding() == 0 else [0, 0, 0, 0]
            nodes.append(helper.make_node("MaxPool", [name(ins[0])], [name(outs[0])], kernel_shape=ks,
                                          strides=[s, s], pads=pads))
        elif kind == "PAD":
            p = data(ins[1])  # NHWC [[before, after]] -> NCHW
            order = [0, 3, 1, 2]
            pads = [int(p[a][0]) for a in order] + [int(p[a][1]) for a in order]
            inits.append(numpy_helper.from_array(np.array(pads, np.int64), f"p{k}"))
            nodes.append(helper.make_node("Pad", [name(ins[0]), f"p{k}"], [name(outs[0])], mode="constant"))
        else:
            raise SystemExit(f"unsupported op {kind}")
    h, w = shape(inp)[1:3]
    graph = helper.make_graph(
        nodes, "face_flag",
        [helper.make_tensor_value_info(name(inp), TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info(name(flag), TensorProto.FLOAT, [1, 1, 1, 1])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="dcgan-pipeline")
    m.ir_version = 6
    onnx.checker.check_model(m)
    onnx.save(m, dst)
    print(f"{dst}: {len(nodes)} nodes, the face-presence logit of {src}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
