"""Neural Mirage for Krita: Tools > Scripts > Neural Mirage...

Scripts can call :func:`neural_mirage_krita.layers.render_layer` directly.
"""

from krita import Krita

from .extension import MirageExtension

EXTENSION = MirageExtension(Krita.instance())
Krita.instance().addExtension(EXTENSION)
