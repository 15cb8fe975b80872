"""Scheduling: which thread runs which agent, when, and what happens when it fails or idles.

* `scheduler`: worker threads and run queues; `executor`: a worker and the message hot path;
* `lifecycle`: create, initialise, restore, hibernate and drop an instance on a worker;
* `timers`: the host's ``schedule``; `supervisor`: the restart budget;
* `maintenance`: which agents to hibernate.
"""
