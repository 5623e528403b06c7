"""trio-bus benchmark suites.

``benchmarks.local`` measures the in-memory bus against the floor (a raw trio channel
drain loop) and its peers (asyncio.Queue, pyee, blinker, optionally FastStream's test
broker), all in one process run so every ratio is taken side by side on one machine.
The ``bus bench`` command drives it; ``docs/performance.md`` explains the numbers.
"""
