"""`nmt-bench`: measure a grid of models x backends x settings; report the Pareto frontier.

grid     the YAML grid (`BenchConfig`), validated; expanded into `Cell`s
cell     one cell measured in a fresh process (`python -m nmt.bench.cell`)
records  results.jsonl: one record per cell, appended atomically
runner   `bench`: runs the cells not measured yet, then writes the report
pareto   the Pareto frontier of two objectives
report   report.md from results.jsonl alone: frontiers, tables, comparison
plot     BLEU vs speed / memory plots with the frontier line

What a measurement ran on (hardware, versions, threads, memory probes) is `nmt.machine`,
which training, evaluation and distillation record too.

Nothing is imported here: a cell's process must not pay for matplotlib in its memory.
"""
