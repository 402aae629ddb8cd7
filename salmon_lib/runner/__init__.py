"""The headless pipeline: presets -> validated stage configs -> one papermill kernel per stage.

    python -m salmon_lib run --preset tiny [--run RUN] [--from S] [--to S] [--only S] [-p stage.key=value]
                                           [--dry-run]
    python -m salmon_lib status --run RUN
    python -m salmon_lib notebooks [--check | --write]

Modules: `presets` (YAML presets and -p overrides, validated before any kernel starts), `plan`
(what is stale and why: run, dry run and status all ask it), `kernel` (run lock, kernel
environment, one notebook in a fresh kernel), `notebooks` (each notebook's parameters cell,
generated from its config, and the checks on it), `pipeline` (orchestration), `status`,
`manifest` (outputs/<run>/manifest.json: hashes, timings, versions), `outputs` (declared outputs
against the manifest: damage, the copy kept while a stage reruns, changed outputs set aside),
`cli` (the commands). Below it, for the stages: `salmon_lib.launch` (a training function under
`accelerate launch` on several GPUs).

How a stage plugs in (stage authors): a stage is its package, its notebook, one line in
`salmon_lib/stages.py`, a section in each preset and its tests.
1. Package `salmon_lib/<stage>/`:
   - `config.py`: `@dataclass class XConfig(<option mixins>, StageConfig)`, every field with a
     default and a `# intent` comment (beside it, or on the lines above when it would pass 120
     characters); `check()` calls `super().check()` and raises ConfigError naming the field. Shared
     groups come from `salmon_lib.options` (GenerationOptions, LoraOptions, TrainingOptions): list
     them as bases, redeclare a field only for another default. Parameters naming files go in
     `file_params` and are read through `cfg.file(name)` (found from the project root and from
     notebooks/ alike); `file_checks` names the function that reads such a file, so a malformed
     one stops the runner up front. Numbers are finite and never negative unless listed in
     `signed` (or their default is negative); a `model` field is checked as a model spec
     (`model_params`) without loading it. Read and write artifacts only under `cfg.run_dir`, by
     fixed names (no parameter renames an artifact: the manifest hashes the declared names). A parameter that is
     renamed or removed goes into `renamed` with what replaced it. This module imports no torch at
     top level (import it inside functions).
   - `stage.py`: `run(cfg) -> dict` runs the whole stage and returns its statistics; the notebook
     calls it too (one execution path), then shows tables shaped in `tables.py` and saved figures.
     Append records through `salmon_lib.io.RecordLog` and skip ids already done, so a killed stage
     resumes. Training on several GPUs: declare TrainingOptions (its `distributed` field) and call
     e.g. `launch("salmon_lib.<stage>.train:train", cfg.to_dict(), distributed=cfg.distributed)` in
     `run`; `train(config: dict)` runs once per GPU under `accelerate launch` (or in-process on
     one device) and its return value comes back from rank 0.
2. Notebook `notebooks/NN_<stage>.ipynb`: title + one paragraph; a cell tagged `parameters`
   (generate it: `python -m salmon_lib notebooks --write`); next cell
   `cfg = XConfig.from_namespace(globals())`; then `<stage>.stage.run(cfg)` and displays, no logic.
3. One line in `salmon_lib/stages.py` STAGES, in pipeline order:
   `Stage("rl", "notebooks/05_rl.ipynb", config="salmon_lib.rl.config:RLConfig", inputs=["rm/", "sft/"],
   outputs=["policy/", "rollouts.jsonl", "rl_metrics.jsonl"])`. Inputs/outputs are names in the run dir
   (files or folders, hashed by content); a trailing "?" marks one optional. Do not declare shared
   folders such as figures/. A declared output the notebook did not write fails the stage. The
   runner keeps a copy of a stage's finished outputs while it reruns and puts it back if the stage
   fails (`outputs`), and reruns a stage whose outputs changed on disk: a stage may write its outputs
   as it goes, and should raise (with what it failed on) rather than write empty ones.
4. A section `stages: {<stage>: {...}}` in each of configs/*.yaml. Keys in `common:` (model, seed,
   chat_format, distributed, ...) reach your config only if it declares a field of that name.
5. Tests: `tests/test_<stage>_*.py` for the stage's own logic and `run` on the tiny model. What
   checks every registered stage by itself: `tests/test_stage_shape.py` (config.py + stage.run, no
   parameter renaming an artifact), `tests/test_runner_presets.py` (every preset validates, every
   parameters cell is the generated one), `tests/test_paths.py` and
   `tests/test_notebooks_from_notebooks_dir.py` (file parameters resolve and the notebook's setup
   runs from notebooks/, as in JupyterLab), `tests/test_runner_e2e.py` (the tiny preset end to end).
"""
