"""kdmed: knowledge transfer (distillation vs transfer learning) for small medical image sets.

The library behind the executable book that re-runs Akbarian et al.,
*Evaluating Knowledge Transfer in Neural Network for Medical Images* (arXiv:2008.13574).
"""

__version__ = "0.1.0"
