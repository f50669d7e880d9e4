"""Checkpoints of the reference implementations in, and the authors' published models by name.

- :mod:`pixforge.interop.statedict`: reading a reference ``.pth`` (old formats too) and matching its
  tensors to a pixforge network layer by layer.
- :mod:`pixforge.interop.junyanz`: pix2pix and CycleGAN generators and discriminators of
  junyanz/pytorch-CycleGAN-and-pix2pix.
- :mod:`pixforge.interop.nvidia`: pix2pixHD's generator (global, local enhancers), feature encoder and
  multi-scale discriminator of NVIDIA/pix2pixHD.
- :mod:`pixforge.interop.catalogue`: the published generators by name (``pixforge pretrained``).

An import writes an ordinary pixforge run (step 0): translate, serve, studio, export, evaluate and
``--init-from`` read it like any other.
"""
