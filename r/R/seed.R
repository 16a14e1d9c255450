# The DelayedArray backend (HDF5Array's TENxMatrix is the model): SinrArraySeed reads blocks of a
# .sinr file on demand, and its chunk grid follows the file's chunks of cells, so block processing
# (rowSums, colSums, blockApply, a SingleCellExperiment's assay) decodes each chunk's tiles once
# and holds about one block in memory, whatever the file's size.

setClass("SinrArraySeed", contains = "Array",
         representation(filepath = "character", matrix = "character", dim = "integer", dimnames = "list",
                        chunk_starts = "numeric", file = "SinrFile"))

# A DelayedArray seed on a .sinr file.
# @param filepath a .sinr file.
# @param matrix the matrix (default the first).
SinrArraySeed <- function(filepath, matrix = NULL) {
  file <- sinr_open(filepath, matrix)
  h <- .header(file)
  new("SinrArraySeed", filepath = file@path, matrix = h$matrix, dim = file@dim, dimnames = dimnames(file),
      chunk_starts = h$chunk_starts, file = file)
}

setMethod("dim", "SinrArraySeed", function(x) x@dim)
setMethod("dimnames", "SinrArraySeed", function(x) x@dimnames)
setMethod("is_sparse", "SinrArraySeed", function(x) TRUE)

# Chunks of cells: every gene, the cells of one file chunk, cut into equal parts of at most
# DelayedArray's block length (getAutoBlockSize()) where a whole chunk is longer: a part of a file
# chunk decodes only the tiles it covers, so block processing holds about one block in memory
# whatever the file's chunk size. Blocks then span every gene (a block of some genes would decode
# every tile of its cells' chunks for them again).
setMethod("chunkGrid", "SinrArraySeed", function(x) {
  per_part <- max(1, DelayedArray::getAutoBlockLength("integer") %/% max(1L, x@dim[[1L]]))
  starts <- x@chunk_starts
  ends <- unlist(lapply(seq_len(length(starts) - 1L), function(k) {
    cells <- starts[[k + 1L]] - starts[[k]]
    parts <- max(1, ceiling(cells / per_part))
    starts[[k]] + round(cells * seq_len(parts) / parts)
  }))
  DelayedArray::ArbitraryArrayGrid(list(x@dim[[1L]], as.integer(unique(ends))))
})

.index0 <- function(index, axis) if (is.null(index[[axis]])) NULL else as.numeric(index[[axis]]) - 1

setMethod("extract_array", "SinrArraySeed", function(x, index) {
  block <- .read_block(x@file, .index0(index, 1L), .index0(index, 2L))
  out <- as.matrix(block)
  storage.mode(out) <- "integer"
  dimnames(out) <- NULL
  out
})

setMethod("extract_sparse_array", "SinrArraySeed", function(x, index) {
  block <- .read_block(x@file, .index0(index, 1L), .index0(index, 2L))
  nzindex <- cbind(block@i + 1L, rep.int(seq_len(ncol(block)), diff(block@p)))
  .sparse_array(dim(block), nzindex, as.integer(block@x))
})

# DelayedArray 0.24 (Debian 12) returns sparse blocks as SparseArraySeed; later versions as the
# SparseArray package's COO_SparseArray.
.sparse_array <- function(dim, nzindex, nzdata) {
  if (requireNamespace("SparseArray", quietly = TRUE)) {
    coo <- getExportedValue("SparseArray", "COO_SparseArray")
    return(coo(dim, nzindex, nzdata, check = FALSE))
  }
  DelayedArray::SparseArraySeed(dim, nzindex, nzdata, check = FALSE)
}

setClass("SinrArray", contains = "DelayedArray")
setClass("SinrMatrix", contains = c("SinrArray", "DelayedMatrix"))
setMethod("matrixClass", "SinrArray", function(x) "SinrMatrix")
# DelayedArray 0.24 asks a DelayedArray for its chunk grid through chunkdim(), which an arbitrary
# grid has not: without this, block processing ignores the chunks and cuts blocks across genes.
setMethod("chunkGrid", "SinrArray", function(x) DelayedArray::chunkGrid(x@seed))
setMethod("DelayedArray", "SinrArraySeed", function(seed) DelayedArray::new_DelayedArray(seed, Class = "SinrArray"))

# A .sinr matrix as a DelayedMatrix (genes x cells, integer counts), read block by block.
# @param filepath a .sinr file.
# @param matrix the matrix (default the first).
SinrMatrix <- function(filepath, matrix = NULL) {
  DelayedArray::DelayedArray(SinrArraySeed(filepath, matrix))
}
