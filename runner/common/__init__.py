"""What the launching side, the training process and the after-training commands share: one implementation each.

- `files`: atomic writes of a file or a whole directory (no heavy imports).
- `models`: loading a tokenizer (with its chat template) and a model, and building library config objects
  from a plan's `{"class", "args"}` specs (imports torch and transformers lazily).
"""
