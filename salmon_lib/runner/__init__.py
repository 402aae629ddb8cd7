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

How a stage plugs in (package, notebook, registry line, presets, page, tests): docs/adding_a_stage.md.
"""
