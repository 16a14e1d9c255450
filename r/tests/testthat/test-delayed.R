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
  # Sums through blocks of 1, 5 and 7 cells (every chunk split), sparse and dense, and a delayed
  # operation on top of the SinrMatrix, which goes through the same blocks (a subset of every cell:
  # the matrix as stored answers sums from the core's one pass instead, tested below).
  old <- DelayedArray::getAutoBlockSize()
  on.exit(suppressMessages(DelayedArray::setAutoBlockSize(old)))
  every <- s[, seq_len(ncol(s))]
  for (cells in c(1L, 5L, 7L)) {
    suppressMessages(DelayedArray::setAutoBlockSize(4 * nrow(m) * cells))
    expect_identical(ncol(DelayedArray::defaultAutoGrid(s)), as.integer(sum(ceiling(c(32, 32, 16) / cells))))
    expect_identical(DelayedArray::rowSums(every), Matrix::rowSums(m))
    expect_identical(DelayedArray::colSums(every), Matrix::colSums(m))
    expect_equal(DelayedArray::rowSums(log1p(s)), Matrix::rowSums(log1p(m)))
    dense_sums <- DelayedArray::blockApply(s, colSums, as.sparse = FALSE)
    expect_identical(unlist(dense_sums, use.names = FALSE), unname(Matrix::colSums(m)))
  }
})

test_that("as(SinrMatrix, 'dgCMatrix') is one read of the core, not DelayedArray's blocks", {
  # DelayedArray 0.24 coerced it block by block through dense blocks: 45 s and 3.4 GB at 6e7 nonzeros
  path <- fixture("pbmc4k_half_chunks32.sinr")
  s <- SinrMatrix(path)
  ns <- asNamespace("scinrcodec")
  reads <- new.env()
  reads$blocks <- 0L
  counted <- function() reads$blocks <- reads$blocks + 1L
  for (block in c(".sinr_sparse_block", ".sinr_dense_block"))
    suppressMessages(trace(block, where = ns, print = FALSE, tracer = bquote(.(counted)())))
  on.exit(for (block in c(".sinr_sparse_block", ".sinr_dense_block")) suppressMessages(untrace(block, where = ns)))
  expect_identical(methods::as(s, "dgCMatrix"), read_sinr(path))
  expect_identical(reads$blocks, 0L)
  expect_identical(methods::as(s[2:9, 5:1], "dgCMatrix"), read_sinr(path)[2:9, 5:1])  # a subset: DelayedArray's way
  expect_gt(reads$blocks, 0L)
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
