"""Tokenizers: WordPiece and GPT-2's byte-level BPE in TensorFlow ops (for tf.data and the
SavedModels), and the trainers and loaders of their HuggingFace counterparts."""
