"""The auditor's tools: a plan's history, the plan as of any moment, verification of the hash chains,
signed checkpoints of the store, self-contained export bundles, and the replay of a plan's Temporal history
against the current code.

Everything here folds stored events with the domain's own ``replay`` (the code the workflow runs), so what
an auditor reconstructs is what the system decided.
"""
