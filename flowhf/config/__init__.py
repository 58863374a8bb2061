"""Every configuration of FlowHF, in one place: the field system (`fields.py`: help strings,
ranges, YAML with line numbers, dotted ``--set`` overrides) and the dataclasses built on it.

    fields.py        help_field, Range / OneOf, build_dataclass, the one override applier
    training.py      FlowHFConfig and its groups (model, target, objective, sampling, ...)
    trl_names.py     TRL's flat GRPOConfig names -> FlowHF group keys (a table the config reads)
    budget.py        Budget: seconds / tokens / completions / steps
    reward_model.py  the Bradley-Terry reward model's config and its saved scoring contract
    evaluation.py    the evaluation's: GenerationSettings, PerPromptSettings, EvalArgs
    baselines.py     the TRL baselines' configs (SFT / GRPO / PPO)
    preset.py        Preset: what one `flowhf reproduce` run uses, and the shipped presets

Light on purpose: no module here imports torch or transformers itself, and no part of FlowHF
but `flowhf.errors`, `flowhf.io` (YAML with line numbers) and, for `training.py` only,
`flowhf.objectives` and `flowhf.target` (the objective names and schedules a config checks;
those import torch).
"""
