"""The hot path, one module per stage in the order the data flows.

resolve person (:mod:`.resolve`) → gather and update state (:mod:`.update`) → fuse into a request
(:mod:`.requests`) → candidates from the index (:mod:`.candidates`) → score → policy (:mod:`.choose`)
→ explain (:mod:`.explain`).  Decoding and publishing are the stream shell's (``stream/``); the
orchestration of a micro-batch is :class:`fusionrec.core.Recommender`.
"""
