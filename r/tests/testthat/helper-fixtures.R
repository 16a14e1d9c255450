# Paths to the repository's fixtures (the tests run from a checkout: .ci/r-check) and readers for
# the conformance vectors' expected files.

repo_root <- function() {
  root <- Sys.getenv("SINR_REPO", normalizePath(file.path(testthat::test_path(), "..", "..", ".."), mustWork = FALSE))
  if (!dir.exists(file.path(root, "tests", "conformance"))) testthat::skip("needs a scinrcodec checkout")
  root
}

# A fixture of fixtures/, or a file the package ships (inst/extdata: the help pages' examples use them).
fixture <- function(name) {
  path <- testthat::test_path("fixtures", name)
  if (file.exists(path)) path else system.file("extdata", name, package = "scinrcodec", mustWork = TRUE)
}

vectors <- function(kind) {
  dir <- file.path(repo_root(), "tests", "conformance")
  manifest <- jsonlite::fromJSON(file.path(dir, "manifest.json"), simplifyVector = FALSE)
  names <- sort(names(Filter(function(case) identical(case$kind, kind), manifest$cases)))
  stats::setNames(file.path(dir, names), names)
}

# One .npy array of little-endian int64 (as doubles: exact below 2^53).
read_npy_int64 <- function(path) {
  con <- file(path, "rb")
  on.exit(close(con))
  stopifnot(identical(readBin(con, "raw", 6L), as.raw(c(0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59))))
  major <- readBin(con, "integer", 1L, size = 1L)
  readBin(con, "integer", 1L, size = 1L)
  header_length <- if (major == 1L) readBin(con, "integer", 1L, size = 2L, signed = FALSE, endian = "little") else
    readBin(con, "integer", 1L, size = 4L, endian = "little")
  header <- rawToChar(readBin(con, "raw", header_length))
  stopifnot(grepl("'descr': *'<i8'", header), grepl("'fortran_order': *False", header))
  shape <- as.numeric(strsplit(sub(".*'shape': *\\(([^)]*)\\).*", "\\1", header), ", *")[[1L]])
  n <- prod(shape)
  words <- readBin(con, "integer", 2 * n, size = 4L, endian = "little")
  low <- as.numeric(words[seq_len(n) * 2 - 1])
  low[low < 0] <- low[low < 0] + 2^32
  low + 2^32 * words[seq_len(n) * 2]
}

# expected.npz of a valid vector: shape, and the nonzeros as 1-based COO sorted by (gene, cell).
read_expected <- function(case_dir) {
  dir <- tempfile("npz")
  on.exit(unlink(dir, recursive = TRUE))
  utils::unzip(file.path(case_dir, "expected.npz"), exdir = dir)
  out <- lapply(c(shape = "shape", genes = "genes", cells = "cells", values = "values"),
                function(key) read_npy_int64(file.path(dir, paste0(key, ".npy"))))
  out$genes <- out$genes + 1
  out$cells <- out$cells + 1
  out
}

# The nonzeros of a sparse matrix as 1-based COO sorted by (row, column).
coo <- function(m) {
  s <- Matrix::summary(methods::as(m, "CsparseMatrix"))
  s <- s[order(s$i, s$j), , drop = FALSE]
  list(genes = as.numeric(s$i), cells = as.numeric(s$j), values = as.numeric(s$x))
}

# A 10x folder of tests/data, read by R alone.
read_10x_folder <- function(folder) {
  dir <- file.path(repo_root(), "tests", "data", folder)
  m <- methods::as(Matrix::readMM(file.path(dir, "matrix.mtx.gz")), "CsparseMatrix")
  features <- utils::read.delim(file.path(dir, "features.tsv.gz"), header = FALSE, quote = "", colClasses = "character")
  barcodes <- utils::read.delim(file.path(dir, "barcodes.tsv.gz"), header = FALSE, quote = "", colClasses = "character")
  list(matrix = m, features = features, barcodes = barcodes[[1L]])
}

`%||%` <- function(a, b) if (is.null(a)) b else a

# The dense genes x cells block of a vector's expected nonzeros (genes and cells distinct, 1-based).
expected_block <- function(exp, genes, cells) {
  out <- matrix(0, length(genes), length(cells))
  keep <- exp$genes %in% genes & exp$cells %in% cells
  out[cbind(match(exp$genes[keep], genes), match(exp$cells[keep], cells))] <- exp$values[keep]
  out
}

# R nodes a read of a fresh object (open()) leaves alive: the R strings it made of a file's names,
# kept with the file, are one node each.
nodes_kept <- function(open, read) {
  x <- open()
  invisible(gc())
  before <- gc()[["Ncells", "used"]]
  read(x)
  gc()[["Ncells", "used"]] - before
}
