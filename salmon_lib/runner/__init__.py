"""The headless pipeline: presets -> validated stage configs -> one papermill kernel per stage.

    python -m salmon_lib run --preset tiny [--run RUN] [--from S] [--to S] [--only S] [-p stage.key=value ...] [--dry-run]
    python -m salmon_lib status --run RUN

Modules: `presets` (YAML presets and -p overrides, validated before any kernel starts),
`manifest` (outputs/<run>/manifest.json: hashes, timings, versions), `pipeline` (skip/rerun,
execution, status), `launch` (run a training function under `accelerate launch` on several GPUs),
`cli` (the two commands).

How a stage plugs in (stage authors):
1. Config: `@dataclass class XConfig(StageConfig)` in your module, every field with a default and a
   `# intent` comment; the module imports no torch at top level (import it inside functions).
2. Notebook `notebooks/NN_<stage>.ipynb`: title + one paragraph; a cell tagged `parameters` holding
   exactly the XConfig fields as typed literals (always `run_dir = "outputs/scratch"`, `seed = 0`);
   next cell `cfg = XConfig.from_namespace(globals())`; then calls into salmon_lib. Read and write
   only under `cfg.run_dir`; the kernel's cwd is the project root. Append records through
   `salmon_lib.io.RecordLog` and skip ids in `.done`, so a killed stage resumes.
3. One line in `salmon_lib/stages.py` STAGES, in pipeline order:
   `Stage("rl", "notebooks/05_rl.ipynb", config="salmon_lib.rl:RLConfig", inputs=["rm/", "sft/"],
   outputs=["policy/", "rollouts/", "metrics.jsonl"])`. Inputs/outputs are names in the run dir
   (files or folders, hashed by content); a trailing "?" marks one optional. Do not declare shared
   folders such as figures/. A declared output the notebook did not write fails the stage.
4. A section `stages: {<stage>: {...}}` in each of configs/*.yaml. Keys in `common:` (model, seed,
   chat_format, distributed, ...) reach your config only if it declares a field of that name.
5. Training on several GPUs: declare `distributed: Distributed = "ddp"` (from
   salmon_lib.runner.launch) in the config and call
   `launch("salmon_lib.yourmodule:train", cfg.to_dict(), distributed=cfg.distributed)` from the
   notebook; `train(config: dict)` runs once per GPU under `accelerate launch` (or in-process on
   one device) and its return value comes back from rank 0.
6. Tests: `tests/test_runner_presets.py` validates every preset against every registered config
   and checks each notebook's parameters cell against its config's fields;
   `tests/test_runner_e2e.py` (slow) runs the tiny preset end to end.
"""
