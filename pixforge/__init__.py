"""pixforge: image-to-image translation with conditional GANs.

``pixforge.load(path)`` gives a translator for a trained run; ``pixforge.train(...)`` mirrors the CLI.
"""

from pixforge.api import Translator, load, train
from pixforge.errors import PixforgeError

__version__ = "0.1.0"
__all__ = ["PixforgeError", "Translator", "load", "train"]
