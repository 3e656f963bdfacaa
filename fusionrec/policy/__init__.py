"""Ranking policies: what happens between the relevance scores and the published top-K.

Pure numpy, no Kafka.  The pieces, in the order a ranker applies them:

- :mod:`fusionrec.policy.context` turns an event's context (hour, weekday, device) and the target
  platform into features that modulate the per-platform fusion weights;
- :mod:`fusionrec.policy.rerank` re-orders the candidates for diversity (MMR) and novelty;
- :mod:`fusionrec.policy.exploration` decides which slots explore (ε-greedy, Thompson, UCB);
- :mod:`fusionrec.policy.ab` assigns each person to an A/B variant that names the policy and its params.

This package imports nothing at import time so that ``fusionrec.config`` can import its submodules
lazily without a cycle.
"""
