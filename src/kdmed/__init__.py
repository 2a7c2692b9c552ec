"""kdmed: knowledge transfer (distillation vs transfer learning) for small medical image sets.

The library behind the executable book that re-runs Akbarian et al.,
*Evaluating Knowledge Transfer in Neural Network for Medical Images* (arXiv:2008.13574).

Importing kdmed pins torch's CPU kernels for reproducible numerics unless
``KDMED_NUMERICS=native`` (see :mod:`kdmed.numerics`): the variables must be set
before torch creates its first kernel.
"""

from kdmed import numerics as _numerics

_numerics.apply_environment()

__version__ = "0.2.0"
