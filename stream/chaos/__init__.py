"""Chaos runs: steady load, one fault from a library, recovery, then the outcome checker.

``target`` says what can be acted on (containers of the dev cluster or a test cluster,
the run's own workers); ``faults_*`` are the faults, each a small inject/heal pair;
``open_loop`` offers open-loop traffic and collects answers; ``measure`` turns send and
answer times into recovery time, throughput and p99 during the fault; ``scenario`` runs a
scenario end to end and judges it with :mod:`stream.tools.check`; ``report`` prints the
table and writes the JSON.
"""
