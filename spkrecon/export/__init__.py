"""Writing results: atomic outputs, H.264 video and image frames."""

from spkrecon.export.atomic import atomic_dir, atomic_file, check_output
from spkrecon.export.frames import FrameWriter, NpyStackWriter, PngFolderWriter
from spkrecon.export.video import VideoWriter

__all__ = ["FrameWriter", "NpyStackWriter", "PngFolderWriter", "VideoWriter", "atomic_dir",
           "atomic_file", "check_output"]
