"""`toolkit diagnose`: when parity breaks, name the layer, and find the nodes to keep in fp32.

- graph.py: ONNX surgery (expose every tensor, match through Q/DQ and Casts, cut one layer out);
- capture.py: run a model with its tensors exposed, one function per runtime;
- analysis.py: per-tensor errors, own vs inherited, verdict, the exposure ("no lie") check;
- bisect.py: the search for the smallest set of nodes kept in fp32 that passes the gate;
- run.py: the command's work (files, images, re-exports through the gate).
"""

from toolkit.diagnose.analysis import DEFAULT_MIN_SQNR_DB, Diagnosis
from toolkit.diagnose.run import diagnose

__all__ = ["DEFAULT_MIN_SQNR_DB", "Diagnosis", "diagnose"]
