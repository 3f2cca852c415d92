"""The special token ids every layer agrees on: tokenizer, corpus, batches, model, search and
exports. SentencePiece models are trained with them (nmt.tokenizer checks it), and source and
target share one joint vocabulary."""

PAD, UNK, BOS, EOS = 0, 1, 2, 3
