"""The control loop: controller, work queue, Lease, shared reads, and the runner."""
