"""The study on its own floor: `make reproduce` and the report it feeds.

    plan.py     the seeded plan (settings x methods x seeds, the gate grid, the smol runs), one
                run and its summary, the worker processes, the start points
    report.py   docs/results.md from the committed summaries: tables, intervals, figures

May import: the floors below (train, worlds, evaluate, config, data, viz, assets). Nothing
below imports it.
"""
