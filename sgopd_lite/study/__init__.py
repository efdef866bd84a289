"""The study on its own floor: `make reproduce` and the reports it feeds.

    plan.py     `make reproduce`: REPRODUCE, every study file both reports read, in order, each
                after its start points; the first study's plan run by run (settings x methods x
                seeds, the gate grid, the smol runs)
    report.py   docs/results_first_study.md (the first study) from the committed summaries
    worlds_report.py  docs/results.md: the worlds study (main table, skills, evidence, thresholds)
    roles_report.py   its section "Where must the verifier act?" (the verifier_roles study)
    stats.py    the interval and paired-difference helpers every table uses
    sweep.py    `sweep`: any grid of runs from key=value lists and ranges or a study file,
                summaries per (cell, seed), resume, workers, shards; run summaries (plan.py uses them)
    sweep_report.py  `sweep-report`: a sweep's table, intervals, paired differences, heatmap
    measured.py the "What was measured" readouts of notebooks 03-06, from the committed summaries
    horizon_report.py, mix_report.py  the sections "The same at 1000 steps" and "Never worse than
                the better of OPD and GRPO?" (the mix study, its pilot and the route measurements)
    unseen.py   the starting models on problems they saw in their SFT data and on eval_unseen
    balance.py  each route's gradient of a mixed method on the starting students
    channels.py, error_kinds.py  measurements on saved students that the report reads
    smol_start.py  a smol world's teacher and student per skill before any method runs

Within the floor: stats <- sweep <- plan <- report, worlds_report <- measured; and stats, sweep <- sweep_report
<- measured.

May import: the floors below (train, worlds, evaluate, config, data, viz, assets). Nothing
below imports it.
"""
