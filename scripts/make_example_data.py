"""Write the files docs/your-own-model.md's worked examples use, into examples/data/ (git ignores it):

- train/ and val/: ImageFolders of 32x32 PNGs in three classes (the brightest colour channel);
- small_resnet.pt: examples/my_model.py's small_resnet trained on train/ for a few seconds;
- classifier.onnx: a classifier "from elsewhere" (batch fixed at 1, opset 11, tensor names with '/'),
  with calibration.npz (its input, no labels) and labelled.npz (input and labels);
- images64.npz and calibration64.npz: 64 random 3x64x64 inputs each for a torchvision
  architecture (no labels): one to evaluate on, one to calibrate int8 on.

Run from the repository root: `python scripts/make_example_data.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "examples" / "data"
CLASSES = ("blue", "green", "red")


def images(rng, count: int, size: int = 32):
    labels = rng.integers(0, 3, size=count)
    pixels = rng.integers(0, 120, size=(count, size, size, 3))
    for i, label in enumerate(labels):
        pixels[i, :, :, 2 - int(label)] += 120  # blue, green, red: the bright RGB channel
    return pixels.astype(np.uint8), labels


def image_folders(rng) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    for split, count in (("train", 300), ("val", 150)):
        x, y = images(rng, count)
        for name in CLASSES:
            (OUT / split / name).mkdir(parents=True, exist_ok=True)
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            Image.fromarray(img).save(OUT / split / CLASSES[int(label)] / f"{i:04d}.png")
        if split == "train":
            train = (x, y)
    return train


def train_small_resnet(x: np.ndarray, y: np.ndarray) -> None:
    import torch

    sys.path.insert(0, str(ROOT / "examples"))
    from my_model import small_resnet

    torch.manual_seed(0)
    model = small_resnet().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    inputs, targets = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(y)
    for step in range(80):
        i = (step * 32) % len(inputs)
        loss = torch.nn.functional.cross_entropy(model(inputs[i : i + 32]), targets[i : i + 32])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(model.eval().state_dict(), OUT / "small_resnet.pt")


def classifier_onnx(rng) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    name_in, name_out = "image/input:0", "head/scores:0"
    inits = [numpy_helper.from_array((rng.normal(size=(8, 3, 3, 3)) * 0.3).astype(np.float32), "conv/W"),
             numpy_helper.from_array(rng.normal(size=(8, 5)).astype(np.float32), "fc/W")]
    nodes = [helper.make_node("Conv", [name_in, "conv/W"], ["conv/out"], pads=[1, 1, 1, 1], name="conv/Conv"),
             helper.make_node("Relu", ["conv/out"], ["relu/out"], name="relu"),
             helper.make_node("GlobalAveragePool", ["relu/out"], ["gap/out"], name="gap"),
             helper.make_node("Flatten", ["gap/out"], ["flat/out"], name="flat"),
             helper.make_node("MatMul", ["flat/out", "fc/W"], [name_out], name="fc")]
    graph = helper.make_graph(nodes, "classifier", [helper.make_tensor_value_info(name_in, TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info(name_out, TensorProto.FLOAT, [1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.checker.check_model(model)
    onnx.save(model, str(OUT / "classifier.onnx"))
    x = rng.uniform(0, 1, size=(96, 3, 32, 32)).astype(np.float32)
    np.savez(OUT / "calibration.npz", **{name_in: x[:48]})
    # Labels: the model's own predictions, a few changed (the reference is then right on most, not all)
    import onnxruntime as ort

    session = ort.InferenceSession(str(OUT / "classifier.onnx"), providers=["CPUExecutionProvider"])
    labels = np.array([session.run(None, {name_in: x[i : i + 1]})[0].argmax() for i in range(48, 96)])
    labels[:3] = (labels[:3] + 1) % 5
    np.savez(OUT / "labelled.npz", **{name_in: x[48:], "labels": labels})


def main() -> None:
    rng = np.random.default_rng(0)
    OUT.mkdir(parents=True, exist_ok=True)
    train_small_resnet(*image_folders(rng))
    classifier_onnx(rng)
    np.savez(OUT / "images64.npz", input=rng.normal(size=(64, 3, 64, 64)).astype(np.float32))
    np.savez(OUT / "calibration64.npz", input=rng.normal(size=(64, 3, 64, 64)).astype(np.float32))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
