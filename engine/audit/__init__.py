"""Doubt without a model: label checks over sequences, look-alike neighbours and duplicates (torch-free).

``findings.Finding`` is the one record every check returns and every view shows.
"""
