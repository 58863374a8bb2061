"""Bootstrap intervals of duplicate-sensitive metrics."""


def test_duplicate_sensitive_intervals_contain_the_estimate():
    """Resampling with replacement repeats completions; distinct-n / diversity CIs must still
    bracket the full-sample value (they are bias-shifted)."""
    import numpy as np

    from flowhf.evaluation.metrics import distinct_n
    from flowhf.evaluation.stats import CompletionSample, metric_cis

    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(list("abcdefghij"), size=8)) for _ in range(60)]
    emb = rng.normal(size=(60, 8))
    sample = CompletionSample(rng.normal(size=60), emb, completions=texts)
    cis = metric_cis(sample, None, 10, n_boot=300, seed=1)
    for key, value in (("distinct_1", distinct_n(texts, 1)), ("distinct_2", distinct_n(texts, 2))):
        low, high = cis[key]
        assert low <= value <= high, (key, low, value, high)
