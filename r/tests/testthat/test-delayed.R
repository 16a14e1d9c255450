# The DelayedArray backend agrees with the in-memory matrix on sums and random blocks, with block
# processing over small blocks along the file's chunks of cells.

test_that("SinrMatrix agrees with read_sinr on rowSums, colSums and random blocks", {
  path <- fixture("pbmc4k_half_chunks32.sinr")
  m <- read_sinr(path)
  s <- SinrMatrix(path)
  expect_s4_class(s, "SinrMatrix")
  expect_identical(dim(s), dim(m))
  expect_identical(dimnames(s), dimnames(m))
  seed <- DelayedArray::seed(s)
  expect_true(DelayedArray::is_sparse(seed))
  # The file's chunks of cells (three), each cut into equal parts of at most a block, every gene in
  # each; block processing sees that grid through the DelayedMatrix too, and its blocks span every gene.
  starts <- scinrcodec:::.header(sinr_open(path))$chunk_starts
  expect_length(starts, 4L)
  check_grid <- function(parts) {
    grid <- DelayedArray::chunkGrid(seed)
    expect_identical(DelayedArray::chunkGrid(s), grid)
    expect_identical(grid@tickmarks[[1L]], nrow(m))
    ends <- as.numeric(grid@tickmarks[[2L]])
    expect_length(ends, parts)
    expect_true(all(starts[-1L] %in% ends))
    expect_lte(max(diff(c(0, ends))), max(1, DelayedArray::getAutoBlockLength("integer") %/% nrow(m)))
    expect_identical(nrow(DelayedArray::defaultAutoGrid(s)), 1L)
  }
  check_grid(3L)  # a whole chunk (150 genes x 32 cells) fits a block of the default 1e8 bytes
  old <- DelayedArray::getAutoBlockSize()
  suppressMessages(DelayedArray::setAutoBlockSize(4000))  # 1000 integers, 6 cells per block
  on.exit(suppressMessages(DelayedArray::setAutoBlockSize(old)))
  check_grid(15L)  # 32 + 32 + 16 cells in parts of 6 or fewer
  expect_equal(DelayedArray::rowSums(s), Matrix::rowSums(m))
  expect_equal(DelayedArray::colSums(s), Matrix::colSums(m))
  set.seed(2)
  for (k in 1:5) {
    i <- sort(sample.int(nrow(m), 20L))
    j <- sample.int(ncol(m), 7L)
    dense <- DelayedArray::extract_array(seed, list(i, j))
    expect_identical(dense, matrix(as.integer(as.matrix(m[i, j])), length(i)))
    sparse <- DelayedArray::extract_sparse_array(seed, list(i, NULL))
    expect_identical(as.integer(as.array(sparse)), as.integer(as.matrix(m[i, ])))
  }
  expect_identical(methods::as(s, "dgCMatrix"), m)
})

test_that("blocks that split the file's chunks equal the in-memory matrix, read in any order", {
  path <- fixture("pbmc4k_half_chunks32.sinr")  # 80 cells in chunks of 32, 32 and 16
  m <- read_sinr(path)
  dense <- matrix(as.integer(as.matrix(m)), nrow(m))
  s <- SinrMatrix(path)
  seed <- DelayedArray::seed(s)
  # Consecutive ranges of cells, as block processing reads them (the core keeps the chunk it decoded
  # for the first part of a chunk and serves the next parts from it), forwards then backwards, and
  # ranges across two chunks.
  for (size in c(1L, 5L, 31L, 33L)) {
    firsts <- seq(1L, ncol(m), by = size)
    for (first in c(firsts, rev(firsts))) {
      j <- first:min(first + size - 1L, ncol(m))
      sparse <- DelayedArray::extract_sparse_array(seed, list(NULL, j))
      expect_silent(validObject(sparse))
      expect_identical(as.array(sparse), dense[, j, drop = FALSE])
      expect_identical(DelayedArray::extract_array(seed, list(NULL, j)), dense[, j, drop = FALSE])
    }
  }
  # Random blocks: genes and cells in any order, with repeats, through the seed and the DelayedMatrix.
  set.seed(3)
  for (k in 1:10) {
    i <- sample.int(nrow(m), 30L, replace = TRUE)
    j <- sample.int(ncol(m), sample.int(40L, 1L), replace = TRUE)
    expect_identical(as.array(DelayedArray::extract_sparse_array(seed, list(i, j))), dense[i, j, drop = FALSE])
    expect_identical(DelayedArray::extract_array(seed, list(NULL, j)), dense[, j, drop = FALSE])
    expected <- as.matrix(m[i, j])
    storage.mode(expected) <- "integer"
    expect_identical(as.matrix(s[i, j]), expected)
  }
  # Sums through blocks of 1, 5 and 7 cells (every chunk split), sparse and dense, of a subset and of
  # a delayed operation on top of the SinrMatrix, which go through the same blocks (the matrix as
  # stored answers sums from the core's one pass instead, tested below).
  old <- DelayedArray::getAutoBlockSize()
  on.exit(suppressMessages(DelayedArray::setAutoBlockSize(old)))
  genes <- s[-1L, ]
  for (cells in c(1L, 5L, 7L)) {
    suppressMessages(DelayedArray::setAutoBlockSize(4 * nrow(m) * cells))
    expect_identical(ncol(DelayedArray::defaultAutoGrid(s)), as.integer(sum(ceiling(c(32, 32, 16) / cells))))
    expect_identical(DelayedArray::rowSums(genes), Matrix::rowSums(m[-1L, ]))
    expect_identical(DelayedArray::colSums(genes), Matrix::colSums(m[-1L, ]))
    expect_equal(DelayedArray::rowSums(log1p(s)), Matrix::rowSums(log1p(m)))
    dense_sums <- DelayedArray::blockApply(s, colSums, as.sparse = FALSE)
    expect_identical(unlist(dense_sums, use.names = FALSE), unname(Matrix::colSums(m)))
  }
})

test_that("a subset's blocks follow the file's chunks of its cells, each part at most a block", {
  s <- SinrMatrix(fixture("pbmc4k_half_chunks32.sinr"))  # 150 genes, 80 cells in chunks of 32, 32 and 16
  ends <- function(x) as.integer(DelayedArray::chunkGrid(x)@tickmarks[[2L]])
  expect_identical(ends(s[, -(1:10)]), c(22L, 54L, 70L))
  expect_identical(ends(s[, c(40:33, 1:5)]), c(8L, 13L))  # each chunk's cells one run, in any order
  expect_identical(ends(s[, c(1, 40, 2)]), 3L)  # chunks interleaved: equal parts
  expect_identical(ends(s[1:10, ]), c(32L, 64L, 80L))
  expect_identical(ends(s[, integer(0)]), integer(0))
  old <- DelayedArray::getAutoBlockSize()
  on.exit(suppressMessages(DelayedArray::setAutoBlockSize(old)))
  suppressMessages(DelayedArray::setAutoBlockSize(4 * 150 * 6))  # 6 cells of every gene, 90 of 10 genes
  expect_identical(ends(s[, -(1:10)]), c(6L, 11L, 16L, 22L, 27L, 33L, 38L, 43L, 49L, 54L, 59L, 65L, 70L))
  expect_identical(ends(s[, c(1, 40, 2, 3:12)]), c(4L, 9L, 13L))
  expect_identical(ends(s[1:10, ]), c(32L, 64L, 80L))
  expect_identical(ends(s[1:10, c(1:80, 1:80)]), c(80L, 160L))  # a chunk in two runs: equal parts
  dense <- as.matrix(s)
  expect_identical(colSums(s[, c(1, 40, 2, 3:12)]), colSums(dense[, c(1, 40, 2, 3:12)]))
  expect_identical(rowSums(s[1:10, c(1:80, 1:80)]), rowSums(dense[1:10, c(1:80, 1:80)]))
})

# Counts the blocks DelayedArray reads through a seed while `expr` runs.
blocks_read <- function(expr) {
  ns <- asNamespace("scinrcodec")
  reads <- new.env()
  reads$blocks <- 0L
  counted <- function() reads$blocks <- reads$blocks + 1L
  for (block in c(".sinr_sparse_block", ".sinr_dense_block"))
    suppressMessages(trace(block, where = ns, print = FALSE, tracer = bquote(.(counted)())))
  on.exit(for (block in c(".sinr_sparse_block", ".sinr_dense_block")) suppressMessages(untrace(block, where = ns)))
  force(expr)
  reads$blocks
}

test_that("as(SinrMatrix, 'dgCMatrix') is one read of the core, of the matrix and of a subset of it", {
  # DelayedArray 0.24 coerced it block by block through dense blocks: 45 s and 3.4 GB at 6e7 nonzeros;
  # a subset (a DelayedSubset) still went that way: 33 s for 2,000 genes of 737,280 barcodes
  path <- fixture("pbmc4k_half_chunks32.sinr")
  s <- SinrMatrix(path)
  m <- read_sinr(path)
  expect_identical(blocks_read(expect_identical(methods::as(s, "dgCMatrix"), m)), 0L)
  expect_identical(blocks_read(expect_identical(methods::as(s[2:9, 5:1], "dgCMatrix"), m[2:9, 5:1])), 0L)
  expect_identical(blocks_read(expect_identical(methods::as(s[, -(3:70)][c(1, 1, 150), ], "dgCMatrix"),
                                                m[, -(3:70)][c(1, 1, 150), ])), 0L)
  expect_gt(blocks_read(expect_identical(methods::as(log1p(s[1:3, ]), "dgCMatrix"), log1p(m[1:3, ]))), 0L)
})

# x[i, j] as in R, either index NULL for a missing one.
take <- function(x, i, j) {
  if (is.null(i)) x[, j, drop = FALSE] else if (is.null(j)) x[i, , drop = FALSE] else x[i, j, drop = FALSE]
}

# Sums and means of both axes; an empty one unnamed (DelayedArray names it by its empty dimnames).
summaries <- function(x) {
  lapply(list(colSums(x), rowSums(x), colMeans(x), rowMeans(x)), function(v) if (length(v)) v else unname(v))
}

test_that("a subset of a SinrMatrix is a SinrMatrix on its genes and cells, equal to the direct read", {
  # Before, x[i, j] was a DelayedSubset, which DelayedArray read through its own blocks
  no_names <- file.path(repo_root(), "tests", "conformance", "no_names", "matrix.sinr")
  for (path in c(fixture("pbmc4k_half_chunks32.sinr"), fixture("duplicate_names.sinr"), no_names)) {
    s <- SinrMatrix(path)
    m <- read_sinr(path)
    f <- sinr_open(path)
    n <- dim(m)
    cases <- list(list(c(n[[1L]], 3:7), NULL), list(NULL, c(5, 5, 1, n[[2L]])), list(-(1:3), NULL),
                  list(NULL, -c(2, n[[2L]])), list(-1, -c(1, 1, 3)), list(c(TRUE, FALSE), NULL),
                  list(integer(0), NULL), list(NULL, integer(0)), list(integer(0), integer(0)),
                  list(c(2, 2, 9), c(1, n[[2L]], 1)), list(rev(seq_len(n[[1L]])), NULL))
    if (!is.null(rownames(m)))  # a name several cells share is its first cell's, as in R
      cases <- c(cases, list(list(rownames(m)[c(4, 1)], colnames(m)[c(3, 3, 60)])))
    for (case in cases) {
      sub <- take(s, case[[1L]], case[[2L]])
      expected <- take(m, case[[1L]], case[[2L]])
      dense <- as.matrix(expected)
      storage.mode(dense) <- "integer"
      expect_s4_class(sub, "SinrMatrix")
      expect_s4_class(DelayedArray::seed(sub), "SinrArraySeed")
      expect_identical(blocks_read(expect_identical(methods::as(sub, "dgCMatrix"), expected)), 0L)
      if (!is.character(case[[1L]]) && !is.logical(case[[1L]]))
        expect_identical(methods::as(sub, "dgCMatrix"), take(f, case[[1L]], case[[2L]]))
      expect_identical(as.matrix(sub), dense)
      sparse <- DelayedArray::extract_sparse_array(DelayedArray::seed(sub), list(NULL, NULL))
      expect_identical(as.array(sparse), unname(dense))
      expect_identical(summaries(sub), summaries(dense))
      # a subset of the subset: the indices compose
      if (all(dim(sub) > 1L)) {
        twice <- sub[dim(sub)[[1L]]:1, -1L]
        expect_s4_class(DelayedArray::seed(twice), "SinrArraySeed")
        expect_identical(methods::as(twice, "dgCMatrix"), expected[dim(sub)[[1L]]:1, -1L, drop = FALSE])
      }
    }
    row <- as.integer(as.matrix(m[2L, , drop = FALSE]))  # drop = TRUE: a vector, as DelayedArray gives it
    names(row) <- colnames(m)
    expect_identical(s[2L, ], row)
  }
})

test_that("sums, means and variances of a stored SinrMatrix come from one pass and equal R's", {
  for (name in c("pbmc4k_half_chunks32.sinr", "mouse_gut_smartseq2.sinr", "frozen_pbmc_max_error_2.sinr")) {
    path <- fixture(name)
    m <- read_sinr(path)
    dense <- as.matrix(m)
    s <- SinrMatrix(path)
    expect_identical(rowSums(s), rowSums(dense))
    expect_identical(colSums(s), colSums(dense))
    expect_equal(rowMeans(s), rowMeans(dense), tolerance = 1e-14)
    expect_equal(colMeans(s), colMeans(dense), tolerance = 1e-14)
    expect_equal(MatrixGenerics::rowVars(s), apply(dense, 1L, var), tolerance = 1e-12)
    expect_equal(MatrixGenerics::colVars(s), apply(dense, 2L, var), tolerance = 1e-12)
    expect_identical(names(MatrixGenerics::rowVars(s)), rownames(m))
    expect_null(names(MatrixGenerics::colVars(s, useNames = FALSE)))
    # one pass, kept with the file: a second call reads nothing (the file gone meanwhile)
    copy <- tempfile(fileext = ".sinr")
    file.copy(path, copy)
    t <- SinrMatrix(copy)
    first <- colSums(t)
    unlink(copy)
    expect_identical(MatrixGenerics::colVars(t), MatrixGenerics::colVars(s))
    expect_identical(first, colSums(dense))
    # delayed operations on top go DelayedArray's way (block processing) and agree
    expect_equal(rowSums(log1p(s)), rowSums(log1p(dense)))
    expect_identical(colSums(s[1:5, ]), colSums(dense[1:5, ]))
  }
})

test_that("cell summaries of a file of 2^31 - 1 declared genes need nothing per declared gene", {
  path <- file.path(repo_root(), "tests", "conformance", "huge_gene_count", "matrix.sinr")
  s <- SinrMatrix(path)
  expect_identical(nrow(s), 2147483647L)
  m <- sinr_open(path)[, seq_len(ncol(s))]
  expect_identical(unname(colSums(s)), unname(Matrix::colSums(m)))
  expect_identical(unname(colMeans(s)), unname(Matrix::colSums(m)) / 2147483647)
})

test_that("a file whose content fails its checksum gives a classed error from the summaries", {
  s <- SinrMatrix(file.path(repo_root(), "tests", "conformance", "chunk_checksum", "matrix.sinr"))
  expect_error(rowSums(s), "fails its checksum", class = "sinr_corrupt_file_error")
})

test_that("sinr_to_sce and sinr_to_seurat carry the counts and the names", {
  path <- fixture("pbmc500_50genes.sinr")
  m <- read_sinr(path)
  sce <- sinr_to_sce(path)
  expect_s4_class(SummarizedExperiment::assay(sce, "counts"), "SinrMatrix")
  expect_identical(dimnames(sce), dimnames(m))
  expect_identical(methods::as(SummarizedExperiment::assay(sce, "counts"), "dgCMatrix"), m)
  expect_identical(SummarizedExperiment::rowData(sce)$gene_ids, scinrcodec:::.names(sinr_open(path), "gene_ids"))
  memory <- sinr_to_sce(path, delayed = FALSE)
  expect_identical(SummarizedExperiment::assay(memory, "counts"), m)
  seu <- sinr_to_seurat(path)
  counts <- SeuratObject::GetAssayData(seu, slot = "counts")
  expect_identical(list(counts@i, counts@p, counts@x, dim(counts)), list(m@i, m@p, m@x, dim(m)))
  expect_identical(colnames(seu), colnames(m))
  expect_identical(rownames(seu), make.unique(gsub("_", "-", rownames(m))))
  expect_identical(seu[["RNA"]][["gene_ids"]][[1L]], scinrcodec:::.names(sinr_open(path), "gene_ids"))
})

test_that("kept summaries are refused once the file changed, as every other read is", {
  path <- tempfile(fileext = ".sinr")
  file.copy(fixture("pbmc500_50genes.sinr"), path)
  s <- SinrMatrix(path)
  sums <- colSums(s)
  expect_identical(colSums(s), sums)
  saved <- tempfile(fileext = ".rds")
  saveRDS(s, saved)
  file.copy(fixture("visium.sinr"), path, overwrite = TRUE)  # the same file rewritten in place
  expect_error(colSums(s), class = "sinr_file_changed_error")
  expect_error(rowSums(readRDS(saved)), class = "sinr_file_changed_error")
})

test_that("a saved SinrMatrix whose file changed says so from any read, not from DelayedArray's grid", {
  path <- tempfile(fileext = ".sinr")
  file.copy(fixture("pbmc500_50genes.sinr"), path)
  saved <- tempfile(fileext = ".rds")
  saveRDS(SinrMatrix(path), saved)
  file.copy(fixture("visium.sinr"), path, overwrite = TRUE)
  s <- readRDS(saved)
  expect_error(colSums(s[1:10, ]), "the file changed since this handle was opened", class = "sinr_file_changed_error")
  expect_error(sum(s), class = "sinr_file_changed_error")
  expect_error(methods::as(s[1:5, 1:5], "dgCMatrix"), class = "sinr_file_changed_error")
  expect_identical(dim(DelayedArray::extract_array(s@seed, list(integer(0), NULL))), c(0L, 80L))
})

test_that("path<- points a saved SinrMatrix at its file moved elsewhere, the same version only", {
  folder <- tempfile()
  dir.create(folder)
  path <- file.path(folder, "a.sinr")
  file.copy(fixture("pbmc500_50genes.sinr"), path)
  saved <- tempfile(fileext = ".rds")
  s <- SinrMatrix(path)
  expect_identical(DelayedArray::path(s), normalizePath(path))
  saveRDS(s, saved)
  moved <- file.path(folder, "b.sinr")
  file.rename(path, moved)
  s <- readRDS(saved)
  expect_error(colSums(s[1:10, ]), class = "sinr_invalid_input_error")  # nothing at the old path
  DelayedArray::path(s) <- moved
  expect_identical(DelayedArray::path(s), normalizePath(moved))
  expect_identical(methods::as(s, "dgCMatrix"), read_sinr(moved))
  other <- file.path(folder, "c.sinr")
  file.copy(fixture("visium.sinr"), other)
  expect_error(DelayedArray::path(s) <- other, "is not the file this seed was made from",
               class = "sinr_file_changed_error")
})

test_that("a SinrMatrix subset by names is DelayedArray's, found without an R string of every name", {
  path <- fixture("odd_names.sinr")  # cells 1 and 5 share a name, gene 2 and cell 3 are ""
  m <- read_sinr(path)
  genes <- rownames(m)
  cells <- colnames(m)
  x <- SinrMatrix(path)
  expect_identical(as(x[genes[c(3, 1)], cells[c(6, 4, 1, 6)]], "dgCMatrix"), m[c(3, 1), c(6, 4, 1, 6)])  # 1: the first
  expect_identical(as(x[c(4, 1), iconv(cells[[1L]], "UTF-8", "latin1"), drop = FALSE], "dgCMatrix"), m[c(4, 1), 1, drop = FALSE])
  expect_identical(x[genes[[3L]], cells[[2L]]], as.integer(m[3, 2]))
  expect_identical(x[, cells[c(2, 4)]][genes[[1L]], cells[[4L]]], as.integer(m[1, 4]))  # names of a subset
  expect_error(x[, c(cells[[2L]], "nope")], "subscript contains invalid names")
  expect_error(x[genes[c(3, 2)], ], "subscript contains invalid names")  # "" is no name to DelayedArray, as to R
  expect_identical(dim(x[, character(0)]), c(4L, 0L))
  big <- fixture("pbmc500_cellranger_h5.sinr")  # 587 cells
  wanted <- colnames(sinr_open(big))[c(5, 9)]
  kept <- function(read) nodes_kept(function() SinrMatrix(big), read)
  every <- kept(function(y) colnames(y)[seq_len(ncol(y))])
  kept(function(y) y[, wanted])
  expect_lt(kept(function(y) y[, wanted]), every / 4)
})
