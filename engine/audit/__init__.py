"""Doubt without a model: label checks over sequences, look-alike neighbours and duplicates (torch-free).

``findings.Finding`` is the one record every check returns and every view shows; ``findings.Doubt`` one review
row per item. ``run.audit`` runs the checks (``sequence`` over ``smooth``, ``lookalike``), ``run.merge`` joins
any findings lists (the model's and ``conformal``'s intervals too) into one queue.
"""
