"""scinrcodec: a compact, exact, randomly accessible codec for single-cell count matrices (.sinr)."""
__version__ = "1.0.0"

from .errors import (CorruptFileError, FormatError, InvalidInputError, OutputExistsError, SinrError,  # noqa: E402
                     SinrIndexError, SinrKeyError, UnsupportedVersionError)
from .formats import CountMatrix, read_matrix, write_matrix  # noqa: E402
from .reader import SinrMatrix, decode, open  # noqa: E402,A004
from .encoder import EncodeOptions, encode  # noqa: E402

__all__ = ["encode", "decode", "open", "SinrMatrix", "EncodeOptions", "CountMatrix", "read_matrix",
           "write_matrix", "SinrError", "InvalidInputError", "OutputExistsError", "FormatError",
           "CorruptFileError", "UnsupportedVersionError", "SinrIndexError", "SinrKeyError", "__version__"]
