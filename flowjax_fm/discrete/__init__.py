r"""Discrete flow matching: flows over integer tokens (Gat et al. 2024).

Sequences of ``L`` tokens from a vocabulary ``[0, V)``, batched as ``(B, L)`` integer arrays,
move from a source (:func:`uniform_source`, or :func:`mask_source`: all a mask token) to data
along a :class:`MixtureDiscretePath`: each token jumps from its source value to its data value
at a random time, with probability :math:`\kappa_t` (a schedule of :mod:`flowjax_fm.paths`) of
having jumped by time ``t``. A model predicts the posterior of the data tokens as logits
``(B, L, V)`` (:class:`~flowjax_fm.models.TokenTransformer`), is trained with
:func:`mixture_kl_loss` and generates with :func:`sample`, which simulates the
continuous-time Markov chain whose rates the posterior defines.

Unlike :mod:`flowjax_fm.paths`, everything here is batched (``t`` of shape ``(B,)``): the
posterior of one token depends on the whole sequence.
"""

from flowjax_fm.discrete._loss import LOSS_KINDS, mixture_kl_loss
from flowjax_fm.discrete._objective import DiscreteObjective
from flowjax_fm.discrete._path import MixtureDiscretePath, mask_source, uniform_source
from flowjax_fm.discrete._sample import sample

__all__ = [
    "DiscreteObjective",
    "LOSS_KINDS",
    "MixtureDiscretePath",
    "mask_source",
    "mixture_kl_loss",
    "sample",
    "uniform_source",
]
