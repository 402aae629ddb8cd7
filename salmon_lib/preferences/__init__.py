"""Stage 03: synthetic preferences.

Two ways to turn prompts into (chosen, rejected) pairs without human labels:
- SALMON: the SFT model samples two answers per prompt and judges them under one principle at a
  time (`judge`), and the per-principle judgements become labelled examples under sampled,
  sometimes negated principle subsets (`aggregate`).
- ALMoST: answers from several (model, shots, demonstration quality) configurations are ranked by
  that rubric alone, with a length-based filter (`almost`).

`config.PreferencesConfig` holds the parameters, `stage.run(cfg)` runs the stage. This package
imports no torch at import time, so the pipeline runner can validate the config before any kernel
starts.
"""
