"""ONNX export of a run's generator, with the run's config in the model's metadata, and an onnxruntime
:class:`OnnxTranslator` that ``pixforge translate MODEL.onnx`` uses.
"""

from __future__ import annotations

from torch import nn


class SampleNorm(nn.InstanceNorm2d):
    """Batch norm with batch statistics, computed as if each sample ran alone (pix2pix's paper test mode).

    At batch 1, batch norm with the batch's statistics normalises each channel over H x W, which is instance
    normalisation with batch norm's affine parameters; this module is that, for any batch size.
    """

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__(bn.num_features, eps=bn.eps, affine=True, track_running_stats=False)
        self.weight.data.copy_(bn.weight.data)
        self.bias.data.copy_(bn.bias.data)
        self.to(bn.weight.device)


def per_sample_norms(method: nn.Module) -> int:
    """In a method that runs in the paper's test mode (networks in train mode at inference), replace every
    batch norm by :class:`SampleNorm`, so that a batch of N translates each sample as it would alone.
    Returns the number of layers replaced (0 when the method normalises with running statistics)."""
    if not getattr(method, "inference_train_mode", lambda: False)():
        return 0
    return _swap_batch_norms(method)


def _swap_batch_norms(module: nn.Module) -> int:
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, SampleNorm(child))
            count += 1
        else:
            count += _swap_batch_norms(child)
    return count
