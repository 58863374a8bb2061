"""Exact target and exact model distribution over {each answer} ∪ {everything else}.

For a prompt x with answers a_1..a_A (canonical ids c_a, EOS set E, action vocabulary V,
completions of at most M actions, forced to end after M):

    model   q(a) = pi(c_a | x) * sum_{e in E} pi(e | x, c_a)       one teacher-forced pass
            q(other) = 1 - sum_a q(a)
    target  alpha = 0:  R(a) = |E| exp(beta r_a),   R(other) = N_other exp(beta r_other)
                        N_other = |E| sum_{L<M} (V-|E|)^L + (V-|E|)^M - |E| A   (counted in log space)
            alpha = 1:  R(a) = p_ref(a) exp(beta r_a),   R(other) = (1 - sum_a p_ref(a)) exp(beta r_other)

Distances are over this A+1-cell partition; they equal the distances between the full
distributions whenever the model spreads "other" like the target does, and lower-bound them
otherwise (merging cells never increases TV or KL).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.special import logsumexp
from transformers import TrainerCallback

from flowhf.models.modes import eval_mode
from flowhf.sampling import SampleSettings, completion_log_probs, sample_completions
from flowhf.sampling.prompts import encode_prompts, eos_ids, left_pad
from flowhf.training.batch import completions_from_ids

NEG = -1e300  # log of "no mass", kept finite for float64 arithmetic


def action_vocab_size(model) -> int:
    """Number of actions per step: the width of the model's output layer."""
    return int(model.get_output_embeddings().weight.shape[0])


@torch.no_grad()
def answer_log_probs(
    model, prompt_ids: list[int], canonical: list[list[int]], eos_ids: list[int], pad_id: int
) -> np.ndarray:
    """[A] log q(a | prompt) of every answer, EOS ids summed (float64), in one batched pass."""
    device = next(model.parameters()).device
    rows = [c + [eos] for eos in eos_ids for c in canonical]  # [E * A], EOS-major
    comp = completions_from_ids(rows, [True] * len(rows), pad_id)
    pids, pmask = left_pad([prompt_ids] * len(rows), pad_id)
    with eval_mode(model):
        lp = completion_log_probs(
            model, pids.to(device), pmask.to(device), comp.ids.to(device), comp.mask.to(device)
        ).log_pf
    per_eos = lp.double().sum(dim=1).cpu().numpy().reshape(len(eos_ids), len(canonical))  # [E, A]
    return logsumexp(per_eos, axis=0)


def log_other_count(vocab_size: int, n_eos: int, max_new_tokens: int, n_answers: int) -> float:
    """log N_other: sequences of at most max_new_tokens actions, EOS-ended or forced, minus the answers."""
    content = np.log(vocab_size - n_eos)
    terms = [np.log(n_eos) + L * content for L in range(max_new_tokens)] + [
        max_new_tokens * content
    ]
    log_total = float(logsumexp(terms))
    return log_total + float(np.log1p(-np.exp(np.log(n_eos * n_answers) - log_total)))


def model_partition(answer_log_q: np.ndarray) -> np.ndarray:
    """[A+1] log q over answers + other (other = 1 - answer mass, floored at NEG)."""
    mass = float(np.exp(logsumexp(answer_log_q)))
    other = np.log1p(-mass) if mass < 1.0 else NEG
    return np.append(answer_log_q, other)


def target_partition(
    rewards: np.ndarray,
    other_reward: float,
    beta: float,
    alpha: float,
    *,
    ref_answer_log_p: np.ndarray | None,
    log_n_other: float,
    n_eos: int,
) -> np.ndarray:
    """[A+1] normalised log target over answers + other (see the module docstring)."""
    if alpha == 0.0:
        log_r = np.append(beta * rewards + np.log(n_eos), beta * other_reward + log_n_other)
    else:
        ref = model_partition(ref_answer_log_p)
        log_r = np.append(beta * rewards, beta * other_reward) + ref
    return log_r - logsumexp(log_r)


@dataclass
class PartitionMetrics:
    tv: float
    kl: float  # KL(target || model)
    answer_mass: float  # model's total probability of the answers
    entropy: float  # entropy (nats) of the model's distribution among the answers
    coverage: int  # answers holding >= half their target mass
    answers_total: int
    top_share: float  # the model's most likely answer's share of its answer mass
    target_entropy: float
    target_top_share: float


def partition_metrics(target_log: np.ndarray, model_log: np.ndarray) -> PartitionMetrics:
    """Distances between two [A+1] log distributions whose last cell is "everything else"."""
    p, q = np.exp(target_log), np.exp(model_log)
    support = p > 0
    kl = float(
        np.sum(p[support] * (target_log[support] - np.maximum(model_log[support], np.log(1e-300))))
    )

    def among_answers(log_v: np.ndarray) -> tuple[float, float]:
        cond = np.exp(log_v[:-1] - logsumexp(log_v[:-1]))
        return float(-(cond * np.log(np.maximum(cond, 1e-300))).sum()), float(cond.max())

    entropy, top = among_answers(model_log)
    t_entropy, t_top = among_answers(target_log)
    return PartitionMetrics(
        tv=0.5 * float(np.abs(p - q).sum()),
        kl=kl,
        answer_mass=float(q[:-1].sum()),
        entropy=entropy,
        coverage=int(np.sum(q[:-1] >= 0.5 * p[:-1])),
        answers_total=len(p) - 1,
        top_share=top,
        target_entropy=t_entropy,
        target_top_share=t_top,
    )


@dataclass
class ExactTarget:
    """Everything fixed before training: each prompt's ids, canonical answers and target partition."""

    prompt_ids: list[list[int]]
    canonical: list[list[list[int]]]  # [prompt][answer] ids without EOS
    answers: list[list[str]]
    target_log: list[np.ndarray]  # [prompt] -> [A+1]
    eos_ids: list[int]
    pad_id: int

    @classmethod
    def build(cls, task, reference, tokenizer, chat_template: bool = True) -> ExactTarget:
        """The task's exact target; `reference` gives log p_ref when alpha = 1 (the starting model)."""
        eos = eos_ids(reference, tokenizer)
        prompt_ids = encode_prompts(tokenizer, task.prompts, chat_template)
        canonical_maps = task.canonical_ids(tokenizer)
        answers = [list(item.answers) for item in task.items]
        canonical = [[m[a] for a in names] for m, names in zip(canonical_maps, answers)]
        targets = []
        for item, pids, canon in zip(task.items, prompt_ids, canonical):
            ref = (
                answer_log_probs(reference, pids, canon, eos, tokenizer.pad_token_id)
                if task.alpha
                else None
            )
            log_n_other = log_other_count(
                action_vocab_size(reference), len(eos), task.max_new_tokens, len(canon)
            )
            rewards = np.array([item.answers[a] for a in item.answers], dtype=np.float64)
            targets.append(
                target_partition(
                    rewards,
                    task.other_reward,
                    task.beta,
                    task.alpha,
                    ref_answer_log_p=ref,
                    log_n_other=log_n_other,
                    n_eos=len(eos),
                )
            )
        return cls(prompt_ids, canonical, answers, targets, eos, tokenizer.pad_token_id)

    def model_log(self, model) -> list[np.ndarray]:
        """[prompt] -> [A+1] exact log q of `model`."""
        return [
            model_partition(answer_log_probs(model, p, c, self.eos_ids, self.pad_id))
            for p, c in zip(self.prompt_ids, self.canonical)
        ]

    def evaluate(self, model) -> dict:
        """Per-prompt metrics and their mean (coverage / answers_total summed over prompts)."""
        rows = []
        for i, (target, learned) in enumerate(zip(self.target_log, self.model_log(model))):
            m = asdict(partition_metrics(target, learned))
            m["distribution"] = {
                "answers": self.answers[i],
                "target": np.exp(target).tolist(),
                "model": np.exp(learned).tolist(),
            }
            rows.append(m)
        out = {
            k: float(np.mean([r[k] for r in rows]))
            for k in (
                "tv",
                "kl",
                "answer_mass",
                "entropy",
                "top_share",
                "target_entropy",
                "target_top_share",
            )
        }
        out["coverage"] = int(sum(r["coverage"] for r in rows))
        out["answers_total"] = int(sum(r["answers_total"] for r in rows))
        out["per_prompt"] = rows
        return out

    def classify(self, prompt: int, ids: list[int], ended_with_eos: bool) -> int:
        """Cell of one sampled completion: its answer index, or A for "everything else"."""
        if ended_with_eos and ids and ids[-1] in self.eos_ids:
            for a, canon in enumerate(self.canonical[prompt]):
                if ids[:-1] == canon:
                    return a
        return len(self.canonical[prompt])

    @torch.no_grad()
    def sampling_check(
        self, model, max_new_tokens: int, n: int = 2000, seed: int = 0, batch_size: int = 250
    ) -> dict:
        """Draw n samples per prompt at temperature 1; compare cell frequencies with the exact q."""
        device = next(model.parameters()).device
        generator = torch.Generator().manual_seed(seed) if device.type == "cpu" else None
        with eval_mode(model):
            rows = []
            for p, exact in enumerate(self.model_log(model)):
                counts = np.zeros(len(exact))
                for start in range(0, n, batch_size):
                    b = min(batch_size, n - start)
                    pids, pmask = left_pad([self.prompt_ids[p]] * b, self.pad_id)
                    comp = sample_completions(
                        model,
                        pids.to(device),
                        pmask.to(device),
                        SampleSettings(max_new_tokens, self.eos_ids, self.pad_id),
                        generator,
                    )
                    for ids, length, eos in zip(
                        comp.ids.tolist(), comp.lengths.tolist(), comp.ended_with_eos.tolist()
                    ):
                        counts[self.classify(p, ids[:length], bool(eos))] += 1
                rows.append(frequency_agreement(counts, np.exp(exact)))
        return {
            "per_prompt": rows,
            "min_chi2_p": min(r["chi2_p"] for r in rows),
            "max_abs_z": max(r["max_abs_z"] for r in rows),
        }


def frequency_agreement(counts: np.ndarray, q: np.ndarray) -> dict:
    """n samples' cell counts [C] against the exact probabilities q [C]: each cell's z-score (cells
    expecting >= 5 samples) and a chi-square test with the small cells pooled so it holds."""
    from scipy.stats import chisquare

    n = counts.sum()
    q = q / q.sum()
    z = (counts - n * q) / np.sqrt(np.maximum(n * q * (1 - q), 1e-12))
    big = n * q >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(n * q[big], n * q[~big].sum())
    keep = exp > 0
    return {
        "samples": int(n),
        "max_abs_z": float(np.abs(z[big]).max(initial=0.0)),
        "chi2_p": float(chisquare(obs[keep], exp[keep] * obs[keep].sum() / exp[keep].sum()).pvalue),
        "frequencies": (counts / n).tolist(),
        "exact": q.tolist(),
    }


class ExactTrace(TrainerCallback):
    """Every `every` training steps: the exact TV, coverage and answer mass, and each answer's
    probability per prompt (a learning curve; the passes count against the time budget)."""

    def __init__(self, target: ExactTarget, every: int) -> None:
        self.target, self.every, self.points = target, every, []

    def on_step_end(self, args, state, control, model=None, **_):
        if state.global_step % self.every:
            return
        with eval_mode(model):
            m = self.target.evaluate(model)
        self.points.append(
            {
                "step": state.global_step,
                **{k: m[k] for k in ("tv", "coverage", "answer_mass")},
                "model": [r["distribution"]["model"] for r in m["per_prompt"]],
            }
        )
