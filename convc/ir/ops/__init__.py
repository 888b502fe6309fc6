"""Op definitions; importing this package registers every op of ``convc.ir.op.Op``."""
from convc.ir.ops import conv, elementwise, movement, normalization, pool, resize  # noqa: F401
