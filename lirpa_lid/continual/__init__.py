"""Continual learning with certified domains: training and metrics, the LID learner, baselines,
importance (freezing policies), replay and Split-MNIST tasks."""
from lirpa_lid.continual.baselines import AGEM, EWC, FineTune, IntervalCL, LwF
from lirpa_lid.continual.importance import Bias, fisher_diagonal, freeze_mask, si_importance
from lirpa_lid.continual.lid_learner import LIDLearner, LIDLearnerConfig, ReplayConfig
from lirpa_lid.continual.replay import ReplayBuffer
from lirpa_lid.continual.tasks import SplitTask, paper_cnn, split_mnist_tasks
from lirpa_lid.continual.training import (
                                          ContinualResult,
                                          TrainConfig,
                                          average_accuracy,
                                          backward_transfer,
                                          forgetting,
                                          negative_flip_rate,
                                          run_continual,
)

__all__ = [
    "AGEM", "Bias", "ContinualResult", "EWC", "FineTune", "IntervalCL", "LIDLearner", "LIDLearnerConfig",
    "LwF", "ReplayBuffer", "ReplayConfig", "SplitTask", "TrainConfig", "average_accuracy",
    "backward_transfer", "fisher_diagonal", "forgetting", "freeze_mask", "negative_flip_rate",
    "paper_cnn", "run_continual", "si_importance", "split_mnist_tasks",
]
