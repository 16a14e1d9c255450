"""scinrcodec: a compact, exact, randomly accessible codec for single-cell count matrices (.sinr)."""
__version__ = "2.0.0"

from .errors import (CorruptFileError, FormatError, InvalidInputError, OutputError, OutputExistsError,  # noqa: E402
                     SinrError, SinrIndexError, SinrKeyError, UnsupportedVersionError)
from .io.matrix import CountMatrix  # noqa: E402
from .io.readers import read_matrix  # noqa: E402
from .io.sources import MatrixSource  # noqa: E402
from .io.writers import write_matrix  # noqa: E402
from .reader.matrix import SinrMatrix, decode, open  # noqa: E402,A004
from .encoder.options import EncodeOptions  # noqa: E402
from .encoder.driver import encode  # noqa: E402
from .encoder.append import append  # noqa: E402
from .io.anndata_store import encode_whole  # noqa: E402
from .reader.lazy import CellBatch, read_lazy  # noqa: E402

__all__ = ["encode", "encode_whole", "append", "decode", "open", "read_lazy", "CellBatch", "SinrMatrix", "EncodeOptions", "CountMatrix", "MatrixSource", "read_matrix",
           "write_matrix", "SinrError", "InvalidInputError", "OutputExistsError", "OutputError", "FormatError",
           "CorruptFileError", "UnsupportedVersionError", "SinrIndexError", "SinrKeyError", "__version__"]
