"""spkrecon: spike-camera (Vidar) recordings to images and video.

Library entry points: :func:`spkrecon.io.open_recording`, :func:`spkrecon.methods.create`,
:func:`spkrecon.pipeline.reconstruct`, :class:`spkrecon.tonemap.ToneMapper`.
"""

__version__ = "0.1.0"
