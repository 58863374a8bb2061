"""The embedding-similarity reward against sentence-transformers directly."""

import os

import pytest
import torch

from flowhf.rewards import EmbeddingReward


@pytest.mark.slow  # importing sentence-transformers alone takes ~10 s on a busy 2-core machine
def test_embedding_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    from flowhf.rewards.embedding import shipped_minilm_dir

    completions = [
        "The cat sat on the mat.",
        "Stock markets fell sharply today.",
        "A kitten rests on a rug.",
    ]
    references = [
        "A cat is sitting on a mat.",
        "A cat is sitting on a mat.",
        "The weather is sunny.",
    ]
    got = EmbeddingReward(column="reference")(
        ["p"] * 3, completions, reference=references
    )  # default model
    st = SentenceTransformer(shipped_minilm_dir(), device="cpu")
    a = st.encode(completions, convert_to_tensor=True, normalize_embeddings=True)
    b = st.encode(references, convert_to_tensor=True, normalize_embeddings=True)
    assert torch.allclose(
        got, torch.nn.functional.cosine_similarity(a, b, dim=-1).float(), atol=1e-5
    )
    assert got[0] > 0.7 and got[0] > got[1]  # paraphrase beats an unrelated sentence


def test_embedding_default_model_and_missing_column():
    from flowhf.rewards.embedding import resolve_embedding_model, shipped_minilm_dir

    assert resolve_embedding_model("all-MiniLM-L6-v2") == shipped_minilm_dir()
    assert os.path.isfile(os.path.join(shipped_minilm_dir(), "config.json"))
    assert resolve_embedding_model("/my/model") == "/my/model"
    with pytest.raises(
        KeyError, match="needs the dataset column 'reference'.*got columns \\['answer'\\]"
    ):
        EmbeddingReward()(["p"], ["x"], answer=["y"])  # raised before any model is loaded
