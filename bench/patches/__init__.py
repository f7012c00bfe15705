"""Instrumentation of our server for the bench, not product code.

Enabled by ``BENCH_PATCHES`` (comma-separated) on our server, which adds this
app to ``INSTALLED_APPS`` (bench/settings.py):

  gcstats   log every collection of generation 2 (duration, objects) to
            $BENCH_GC_LOG as JSON lines
  stalls    when the event loop has not run its ticker for 10 ms, sample
            what the loop's thread runs (its stack, every 2 ms until the
            loop runs again); every stall to $BENCH_STALL_LOG as JSON lines
"""
