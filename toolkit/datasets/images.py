"""Image data: MNIST's IDX files and ImageFolder directories, decoded (Pillow) and preprocessed
one batch at a time: resize the shorter side, centre-crop, channels, scale, mean/std, NCHW float32."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from toolkit.datasets.base import DataSource, DataSourceInfo
from toolkit.errors import DataError, InputError
from toolkit.spec import DYNAMIC, ModelSpec, Preprocessing

_WIDE_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff")


def _image_input(spec: ModelSpec, kind: str):
    tensor = spec.single_input
    if tensor is None or len(tensor.shape) != 4 or tensor.shape[1] not in (DYNAMIC, 1, 3):
        shapes = ", ".join(f"{t.name} {list(t.shape)}" for t in spec.inputs)
        raise InputError(f"{kind} data feeds one image input (N, C, H, W) with C 1 or 3; model {spec.name} takes {shapes}",
                         "use npz: or script: data for this model")
    return tensor


def resolve_preprocessing(spec: ModelSpec, preprocessing: Preprocessing | None, kind: str = "imagefolder") -> Preprocessing:
    """The preprocessing actually applied: the given one, else the spec's, else defaults with the
    model's channel count; a resize without a size crops to the model's (or the resize's) square."""
    tensor = _image_input(spec, kind)
    pre = preprocessing or spec.preprocessing
    if pre is None:
        pre = Preprocessing(channels=tensor.shape[1] if tensor.shape[1] != DYNAMIC else 3)
    if pre.size is None and pre.resize is not None:
        h, w = tensor.shape[2:]
        pre = dataclasses.replace(pre, size=(h, w) if DYNAMIC not in (h, w) else (pre.resize, pre.resize))
    if pre.size is not None and pre.resize is not None and pre.resize < min(pre.size):
        raise InputError(f"--resize {pre.resize} is smaller than --size {list(pre.size)}", "resize to at least the crop size")
    return pre


def _normalize(pixels: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 scaled, mean-subtracted, std-divided per channel."""
    out = pixels.astype(np.float32)
    if pre.scale == 1 / 255:
        out /= np.float32(255)  # as toolkit.data.to_model_input: bit-identical MNIST inputs
    elif pre.scale != 1:
        out *= np.float32(pre.scale)
    mean = np.asarray(pre.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(pre.std, np.float32).reshape(1, -1, 1, 1)
    if pre.mean != (0.0,):
        out -= mean
    if pre.std != (1.0,):
        out /= std
    return out


def _resize_crop(image, pre: Preprocessing, where: str):
    """A PIL image resized (shorter side to pre.resize) and centre-cropped to pre.size."""
    from PIL import Image

    if pre.resize is not None:
        w, h = image.size
        short, long = min(w, h), max(w, h)
        if short != pre.resize:
            # torchvision's Resize(int): the shorter side to `resize`, the longer truncated in proportion
            other = int(pre.resize * long / short)
            image = image.resize((pre.resize, other) if w <= h else (other, pre.resize), Image.BILINEAR)
    if pre.size is not None:
        th, tw = pre.size
        w, h = image.size
        if w < tw or h < th:
            raise DataError(f"image {where} is {w}x{h}, smaller than the crop size {tw}x{th}", "pass --resize to scale images up first")
        left, top = int(round((w - tw) / 2.0)), int(round((h - th) / 2.0))  # as torchvision's CenterCrop
        if (w, h) != (tw, th):
            image = image.crop((left, top, left + tw, top + th))
    return image


# --- mnist --------------------------------------------------------------------------------------

class MnistData(DataSource):
    def __init__(self, spec: ModelSpec, preprocessing: Preprocessing | None, split: str, data_dir):
        from toolkit.data import SPLITS

        if split not in SPLITS:
            raise InputError(f"unknown MNIST split {split!r}", "use 'train' or 'test'")
        self.pre = resolve_preprocessing(spec, preprocessing, "mnist")
        self.split, self.data_dir = split, data_dir
        self.input_name = spec.inputs[0].name
        super().__init__(spec, DataSourceInfo("mnist", f"mnist ({split})", SPLITS[split][2], True, dataclasses.asdict(self.pre)))

    def _raw_batches(self, batch_size, limit):
        from PIL import Image

        from toolkit.data import load_split_uint8

        images, labels = load_split_uint8(self.split, self.data_dir)
        n = len(images) if limit is None else min(limit, len(images))
        pre = self.pre
        plain = pre.resize is None and pre.size in (None, (28, 28))
        for start in range(0, n, batch_size):
            chunk = images[start : min(n, start + batch_size)]
            if plain:
                pixels = chunk[:, None]
            else:
                pixels = np.stack([np.asarray(_resize_crop(Image.fromarray(im), pre, f"mnist #{start + i}"))[None]
                                   for i, im in enumerate(chunk)])
            if pre.channels == 3:
                pixels = np.repeat(pixels, 3, axis=1)
            yield {self.input_name: _normalize(pixels, pre)}, labels[start : start + len(chunk)]


# --- imagefolder --------------------------------------------------------------------------------

class ImageFolderData(DataSource):
    def __init__(self, spec: ModelSpec, directory: str, preprocessing: Preprocessing | None):
        root = Path(directory)
        if not root.is_dir():
            raise InputError(f"imagefolder {root} is not a directory", "pass imagefolder:DIR with one subfolder of images per class")
        self.pre = resolve_preprocessing(spec, preprocessing)
        self.tensor = spec.inputs[0]
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        # Labels are the sorted folders' indices, except when every folder is one of the model's named
        # classes: then the name's index, so a folder of some classes only (3/, 7/) keeps true labels.
        names = spec.task.class_names
        label_of = {n: names.index(n) for n in classes} if names and classes and set(classes) <= set(names) else {n: i for i, n in enumerate(classes)}
        self.files: list[tuple[str, int]] = []
        for name in classes:
            index = label_of[name]
            for dirpath, dirnames, filenames in os.walk(root / name):
                dirnames.sort()
                self.files += [(os.path.join(dirpath, f), index) for f in sorted(filenames)
                               if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")]
        if not self.files:
            loose = [f for f in os.listdir(root) if f.lower().endswith(IMAGE_SUFFIXES)]
            raise DataError(f"imagefolder {root} has no images in class subfolders" + (f" ({len(loose)} images lie loose in it)" if loose else ""),
                            "put PNG/JPEG files in one subfolder per class (DIR/<class>/<image>.png)")
        super().__init__(spec, DataSourceInfo("imagefolder", str(root), len(self.files), True, dataclasses.asdict(self.pre), tuple(classes)))
        task = spec.task
        if task.kind == "classification" and classes and max(label_of.values()) >= task.num_classes:
            raise InputError(f"imagefolder {root} has {len(classes)} class folders, so labels up to {len(classes) - 1}, outside the class range 0..{task.num_classes - 1} of model {spec.name}",
                             "give one folder per class of this model, or pass the right --num-classes")

    def _decode(self, path: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image.load()
                wide = image.mode in _WIDE_MODES
                image = image.convert("L" if self.pre.channels == 1 else "RGB")
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise DataError(f"cannot decode image {path} ({' '.join(str(exc).split())[:120]})", "replace or remove the file") from None
        if wide:
            # Pillow clips 16-bit and float pixels to 0..255 when converting; that would be silently wrong data.
            raise DataError(f"image {path} has 16-bit or float pixels", "save it with 8 bits per channel")
        image = _resize_crop(image, self.pre, path)
        pixels = np.asarray(image)
        return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)

    def _raw_batches(self, batch_size, limit):
        n = len(self.files) if limit is None else min(limit, len(self.files))
        first: tuple[str, tuple] | None = None
        _, _, h, w = self.tensor.shape
        for start in range(0, n, batch_size):
            chunk = self.files[start : min(n, start + batch_size)]
            pixels = []
            for path, _ in chunk:
                image = self._decode(path)
                if first is None:
                    first = (path, image.shape)
                    if DYNAMIC not in (h, w) and image.shape[1:] != (h, w):
                        raise DataError(f"images in {self.info.location} are {image.shape[2]}x{image.shape[1]} (first: {path}), model {self.spec.name} takes {w}x{h}",
                                        f"pass --resize and --size {h} (or images of that size)")
                elif image.shape != first[1]:
                    raise DataError(f"images of mixed sizes: {path} is {image.shape[2]}x{image.shape[1]}, {first[0]} is {first[1][2]}x{first[1][1]}",
                                    "pass --resize and --size so every image is brought to one size")
                pixels.append(image)
            labels = np.fromiter((label for _, label in chunk), np.int64, len(chunk))
            yield {self.tensor.name: _normalize(np.stack(pixels), self.pre)}, labels
