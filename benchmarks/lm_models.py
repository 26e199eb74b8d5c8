"""What the lm benchmarks share: prompts, and the model they time."""

from __future__ import annotations

from pathlib import Path

PROMPTS = [
    "KING.",
    "ROMEO.\nBut soft",
    "Enter Hamlet",
    "To be, or not to be, that is",
    "O Romeo, Romeo, wherefore art thou Romeo?",
    "FIRST CITIZEN.\nBefore we proceed",
    "Now is the winter of our discontent made glorious summer",
    "All the world's a stage, and all the men and women merely players;",
    "Friends, Romans, countrymen, lend me your ears; I come to bury Caesar, not",
    "Tomorrow, and tomorrow, and tomorrow, creeps in this petty pace from day to day",
]


def model_and_tokenizer(model_dir: str):
    from tfhf.models.loading import load_causal_lm, resolve_model
    from tfhf.tokenizers.bpe import load_bpe, train_bpe

    if Path(model_dir).exists():
        folder = resolve_model(model_dir)
        return load_causal_lm(folder), load_bpe(folder), f"trained model in {folder}"
    import tempfile

    from tfhf.tasks.lm import LmConfig, new_gpt2

    config = LmConfig()
    tokenizer = train_bpe(
        [" ".join(PROMPTS) * 50], vocab_size=config.vocab_size, folder=Path(tempfile.mkdtemp())
    )
    tokenizer.add_tokens([f"<extra_{i}>" for i in range(config.vocab_size - len(tokenizer))])
    return new_gpt2(config, tokenizer), tokenizer, "random-init model of the default lm size"
