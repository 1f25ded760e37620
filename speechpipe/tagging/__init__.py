"""Tagging stage: empathic-communication acts and call phases from text (linear model + Viterbi)."""
