"""Model definitions (one file per architecture). Both arms share the same output contract:

``forward(features[B, n_mels, T]) -> (powerset_logprobs[B, T', 7], embeddings[B, 3, D])``

* ``powerset_logprobs``: log-probabilities of the 7 powerset classes over 3 local speakers
  (silence, {1}, {2}, {3}, {1,2}, {1,3}, {2,3}), so overlap of two speakers is a class of its own.
* ``embeddings``: one L2-normalised speaker embedding per local speaker, pooled over the frames
  where that speaker speaks alone; clustered across chunks to get global speaker identities.
"""
