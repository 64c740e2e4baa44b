"""Export trained checkpoints to the runtimes people deploy with: CTranslate2 (:mod:`.ct2`) and
ONNX Runtime (:mod:`.onnx`). :func:`export_checkpoint` is the one entry point the CLI uses."""

from formers.export.checkpoint import TARGETS, export_checkpoint
from formers.export.common import ExportError

__all__ = ["TARGETS", "ExportError", "export_checkpoint"]
