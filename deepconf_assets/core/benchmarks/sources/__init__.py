"""One module per benchmark: its normaliser and its `SPEC = BenchmarkSpec(...)`.

The registry (`..registry`) imports every module here and registers each `SPEC`, so adding a benchmark is
one module here (plus its files under `data/<name>/` and its test). Modules import from the
`contract`, `reader`, `gold` and `spec` modules, never from the package itself (it is still loading).
"""
