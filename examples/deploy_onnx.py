"""Run a pixforge ONNX export with onnxruntime, numpy and PIL alone.

python deploy_onnx.py MODEL.onnx INPUT.png OUTPUT.png [CLUSTER]
"""

import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

model, source, target = sys.argv[1:4]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
spec = json.loads(session.get_modelmeta().custom_metadata_map["pixforge.inputs"])
picture = ImageOps.exif_transpose(Image.open(source))  # upright, as the camera meant it
size = tuple(spec["resize"]["size"]) if spec["resize"] else picture.size  # some models run at a fixed size

feeds = {}
if "image" in spec["inputs"]:
    pixels = np.asarray(picture.convert("RGB").resize(size, Image.BICUBIC), dtype=np.float32)
    feeds["image"] = (pixels / 127.5 - 1).transpose(2, 0, 1)[None]
else:  # a label map: class ids (mode L, P or I), or colours of the model's palette
    label = picture.resize(size, Image.NEAREST)
    if label.mode in ("L", "P", "I"):
        ids = np.asarray(label, dtype=np.int64)
    else:
        rgb = np.asarray(label.convert("RGB"), dtype=np.int64)
        ids, best = np.zeros(rgb.shape[:2], np.int64), np.full(rgb.shape[:2], np.inf)
        for k, colour in enumerate(spec["inputs"]["label"]["palette"]):  # the nearest palette colour
            distance = ((rgb - colour) ** 2).sum(-1)
            ids[distance < best] = k
            best = np.minimum(best, distance)
    feeds["label"] = ids[None, None]
    if "instance" in spec["inputs"]:
        feeds["instance"] = feeds["label"]  # no instance map: one instance per class region
    if "cluster" in spec["inputs"]:  # one style: this cluster of every class
        feeds["cluster"] = np.full_like(feeds["label"], int(sys.argv[4]) if len(sys.argv) > 4 else 0)

output = session.run(None, feeds)[0][0]  # (3, H, W) in [-1, 1]; any H x W works, the graph pads inside
result = Image.fromarray(((output + 1) * 127.5).round().clip(0, 255).astype(np.uint8).transpose(1, 2, 0))
result.resize(picture.size, Image.BICUBIC).save(target)
