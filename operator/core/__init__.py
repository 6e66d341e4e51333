"""The pure core: promotion planning and the run's state machine.

Plain functions over plain data; no I/O, no clock, no Kopf. The runner (which the
controller calls once per pass) feeds in the time, the requests and the effects
through which the core reads and writes, and gets back what to record and when to
come back.
"""
