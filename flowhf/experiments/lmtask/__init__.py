"""Exact distribution tasks on a real language model (`benchmarks/lm_target.py`).

A task names a few prompts and a finite set of answers with rewards; every other completion
gets one shared reward. Because the answers are enumerated, both the target distribution and
the model's distribution over {each answer} ∪ {everything else} are computed exactly, so a
trained model is measured, not sampled.

    task.py       the YAML task format, checked at load time, and canonical tokenization
    reward.py     the task's reward on token ids (a `flowhf.rewards.Reward`)
    exact.py      exact target masses, exact model probabilities, distances, a sampling check
    warmstart.py  a generic bare-answer format warm start shared by every method
    methods.py    one runner per method (FlowHF objectives, TRL GRPO / PPO), same budget
"""

from flowhf.experiments.lmtask.task import LMTask, TaskError, load_task

__all__ = ["LMTask", "TaskError", "load_task"]
