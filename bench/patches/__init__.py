"""Experiments, not product code: the changes proposed for ``sse/`` applied as
monkeypatches, so their effect can be measured before anyone edits ``sse/``.

Enabled by ``BENCH_PATCHES`` (comma-separated) on our server, which adds this
app to ``INSTALLED_APPS`` (bench/settings.py):

  gcstats   log every collection of generation 2 (duration, objects) to
            $BENCH_GC_LOG as JSON lines
  auth      stream authorisation and the backlog query in the loop's shared
            thread pool (``thread_sensitive=False``), DB connection released
            around them, as channels' ``database_sync_to_async`` does
  executor  once a stream starts, shut down the per-request thread that
            Django's ``ThreadSensitiveContext`` keeps for the whole response
  freeze    ``gc.freeze()`` after each burst of new streams, so full
            collections skip the long-lived objects of open streams
"""
