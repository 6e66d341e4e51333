"""The pure core: promotion planning and the run's state machine.

Plain functions over plain data; no I/O, no clock, no Kopf. The handlers feed
in what they observed and the time, and get back what to do and what to record.
"""
