"""The local real stack the tests, the demo and the benchmarks run on.

A real kube-apiserver with a real etcd (built from pinned Go modules), a real
Keycloak (server distribution from Maven Central) and the Seldon Deploy
simulator, all on loopback, all started and stopped by this package.
``python -m tests.harness up`` brings the stack up for a person.
"""
