"""Instrumentation of our server for the bench, not product code.

Enabled by ``BENCH_PATCHES`` (comma-separated) on our server, which adds this
app to ``INSTALLED_APPS`` (bench/settings.py):

  gcstats   log every collection of generation 2 (duration, objects) to
            $BENCH_GC_LOG as JSON lines
"""
