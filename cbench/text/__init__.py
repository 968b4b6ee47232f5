"""Text: the sentencepiece tokenizer shared by base model, harness and synthesis."""
