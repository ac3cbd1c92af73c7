"""Continual learning with certified domains.

* :mod:`~lirpa_lid.continual.loop` — the :class:`Learner` protocol and :func:`run_continual`;
* :mod:`~lirpa_lid.continual.training` — training one task (:class:`TrainConfig`, :func:`fit`, losses);
* :mod:`~lirpa_lid.continual.heads` — masked (task-incremental) heads;
* :mod:`~lirpa_lid.continual.metrics` — accuracy, forgetting, backward transfer, negative flips;
* :mod:`~lirpa_lid.continual.lid_learner` — the certified learner (projection into nested LIDs);
* :mod:`~lirpa_lid.continual.baselines` — SGD, EWC, LwF, A-GEM, InterContiNet;
* :mod:`~lirpa_lid.continual.importance` — parameter importance and freezing policies;
* :mod:`~lirpa_lid.continual.replay` — replay buffers; :mod:`~lirpa_lid.continual.tasks` — Split-MNIST.
"""
from lirpa_lid.continual.baselines import AGEM, EWC, FineTune, IntervalCL, LwF
from lirpa_lid.continual.importance import Bias, FreezingPolicy, fisher_diagonal, freeze_mask, si_importance
from lirpa_lid.continual.lid_learner import LIDLearner, LIDLearnerConfig, ReplayConfig
from lirpa_lid.continual.loop import ContinualResult, Learner, run_continual
from lirpa_lid.continual.metrics import (
                                         accuracy,
                                         average_accuracy,
                                         backward_transfer,
                                         correct,
                                         forgetting,
                                         negative_flip_rate,
)
from lirpa_lid.continual.replay import ReplayBuffer
from lirpa_lid.continual.tasks import SplitTask, paper_cnn, split_mnist_tasks
from lirpa_lid.continual.training import TrainConfig, fit

__all__ = [
    "AGEM", "Bias", "ContinualResult", "EWC", "FineTune", "FreezingPolicy", "IntervalCL", "LIDLearner",
    "LIDLearnerConfig", "Learner", "LwF", "ReplayBuffer", "ReplayConfig", "SplitTask", "TrainConfig", "accuracy",
    "average_accuracy", "backward_transfer", "correct", "fisher_diagonal", "fit", "forgetting", "freeze_mask",
    "negative_flip_rate", "paper_cnn", "run_continual", "si_importance", "split_mnist_tasks",
]
