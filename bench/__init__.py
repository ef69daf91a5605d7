"""`make bench`: what a click costs in time and money, measured, and written to BENCHMARKS.md.

One module per figure (``fig1_cold_start`` ... ``fig9_machine_detection``), each runnable on its own with
``python -m bench.<module>``; ``bench.run`` runs them all, each in a fresh interpreter, and rewrites
BENCHMARKS.md. Nothing here is product code: the bench measures ``functions/`` and ``local/`` as they are.
"""
