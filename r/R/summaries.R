# rowSums, colSums, rowMeans, colMeans, rowVars and colVars of a SinrMatrix as the file stores it
# (no delayed operation on it): one pass of the core over the file (every chunk decoded once,
# never placed, its checksum verified) gives every gene's and cell's sums and variances at once,
# each computed exactly and rounded once, kept with the open file for the next call (of the genes a
# chunk stores: a gene not stored holds no nonzero). A SinrMatrix with delayed
# operations on it goes DelayedArray's way (block processing; rowVars and colVars there need the
# DelayedMatrixStats package).

.summaries <- function(x) {
  file <- x@seed@file
  state <- file@state
  handle <- .handle(file)  # after saveRDS, opened again: the same version of the file, or an error
  if (is.null(state$summaries)) {
    state$summaries <- .native(.sinr_summaries(handle, .threads()))
  } else {
    .native(.sinr_check_unchanged(handle))  # kept summaries are of the file only while it is unchanged
  }
  state$summaries
}

# Whether the matrix is the file's, as stored: the summaries are of it.
.as_stored <- function(x) is(x@seed, "SinrArraySeed") && !is(x@seed, "SinrSubsetSeed")

# One summary of every gene or cell: the stored ones' spread over the axis (a gene not stored holds
# no nonzero), then named.
.summary <- function(x, axis, what, names) {
  held <- .summaries(x)[[axis]]
  if (is.null(held$items)) {
    out <- held[[what]]
  } else {
    out <- rep(held$fill[[what]], length.out = if (axis == "genes") nrow(x) else ncol(x))
    out[held$items] <- held[[what]]
  }
  names(out) <- names
  out
}

.row_or_col <- function(axis, what) {
  names_of <- if (axis == "genes") rownames else colnames
  function(x, na.rm = FALSE, dims = 1) {
    if (!.as_stored(x) || dims != 1) return(callNextMethod())
    .summary(x, axis, what, names_of(x))
  }
}

setMethod("rowSums", "SinrMatrix", .row_or_col("genes", "sums"))
setMethod("colSums", "SinrMatrix", .row_or_col("cells", "sums"))
setMethod("rowMeans", "SinrMatrix", .row_or_col("genes", "means"))
setMethod("colMeans", "SinrMatrix", .row_or_col("cells", "means"))

.vars <- function(axis) {
  names_of <- if (axis == "genes") rownames else colnames
  function(x, rows = NULL, cols = NULL, na.rm = FALSE, center = NULL, ..., useNames = NA) {
    if (!.as_stored(x) || !is.null(rows) || !is.null(cols) || !is.null(center)) return(callNextMethod())
    .summary(x, axis, "variances", if (isFALSE(useNames)) NULL else names_of(x))
  }
}

setMethod("rowVars", "SinrMatrix", .vars("genes"))
setMethod("colVars", "SinrMatrix", .vars("cells"))
