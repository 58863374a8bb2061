"""Bradley-Terry reward models: training (`train.py`) and the gold model's extra pairs
(`gold_pairs.py`). Its config and scoring contract are `flowhf.config.reward_model`; the
trained model is scored as a reward by `flowhf.rewards.classifier`."""
