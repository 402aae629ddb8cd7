"""Scoring shared by stages 03, 04 and 06: how a principle and an answer are rendered for a
likelihood (`render`), the likelihood judge modes (`judge_modes`) and the principle-flip probes
(`flip_probes`). Stage packages import these instead of each other's internals.
"""
