"""Candidate search over item vectors (faiss): ``index.candidates.CandidateIndex``, exact up to a size, IVF
above it, fed by the item store (``fusionrec.items``).

Nothing is imported here, so ``import index`` stays cheap and never loads faiss by itself.
"""
