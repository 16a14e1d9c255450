"""Whole-file storage: a whole AnnData or 10x HDF5 file in one .sinr file, and the user-facing
matrix and functions built on it (to_anndata, read_sinr, write_sinr, concat, subset, decode).

This layer sits above both the encoder and the reader: it encodes count matrices with the one and
reads them back with the other, and stores every other part of the file through anndata's own I/O.
"""
