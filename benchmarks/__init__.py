"""Benchmarks: what the framework costs over hand-written Keras, measured side by side.

    python -m benchmarks                      # the full suite (about 10-15 minutes on 2 cores)
    python -m benchmarks --quick              # tiny sizes: checks the harness, measures little
    python -m benchmarks --only loops,compute --out outputs/benchmarks/mine

One module per benchmark (overhead, startup, loops, tracking, pipeline, variants, compute), each
with `run(session) -> section`; `probe` times Keras training loops, `session` runs training in
this process or in a child, `report` writes results.json and results.md.
"""
