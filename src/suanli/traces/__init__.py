"""Real workloads: GPU-cluster traces in, scenario jobs out (docs/TRACES.md).

Modules, in the order the data flows:

- `reader`, `records`: the CSV rows of a trace as `TraceRecord`s (or a counted reason not to);
- `philly`, `alibaba_openb`, `alibaba_dlrm`, `generic_csv`: one reader per trace kind, each
  with its mapping in its docstring; `gpu_spec`: Alibaba GPU models -> scenario GPU types;
- `timespec`: windows and durations as the user writes them;
- `synthesis`: what the traces lack (origins, data, deadlines, checkpoints, classes, latency
  bounds, estimate noise), seeded; `gavel` + `gavel_speedups.csv`: class speeds;
- `jobs_csv`: the loader's jobs CSV, written atomically;
- `importer`: the two-pass streaming import and its report; `stats`: a workload's figures.

The CLI (`suanli.cli_trace`) only parses options and renders; nothing here prints.
"""
