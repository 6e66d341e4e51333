"""A small local OpenID Connect provider for unit tests (see :mod:`tests.oidcstub.server`)."""

from tests.oidcstub.helpers import FakeClock, write_secret
from tests.oidcstub.server import Fault, OIDCStub, RecordedRequest

__all__ = ["FakeClock", "Fault", "OIDCStub", "RecordedRequest", "write_secret"]
