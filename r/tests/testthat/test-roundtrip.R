# Files the Python package wrote (fixtures/, see make_fixtures.py) read back in R identical to the
# source data, which R reads itself from tests/data.

cases <- list(pbmc500_50genes = "pbmc500_3p_lt_x_50genes", pbmc4k_half_chunks32 = "pbmc4k_v2_soupx_half",
              mouse_gut_smartseq2 = "mouse_gut_cimseq_smartseq2", visium = "visium_spaceranger3")

test_that("lossless files written by Python read back identical in R, names and all", {
  for (name in names(cases)) {
    source <- read_10x_folder(cases[[name]])
    m <- read_sinr(fixture(paste0(name, ".sinr")))
    # read_sinr builds the dgCMatrix without Matrix's checks: it must pass them, and equal readMM's slot for slot.
    expect_error(methods::validObject(m, complete = TRUE), NA, info = name)
    want <- source$matrix
    want@Dimnames <- dimnames(m)
    expect_identical(m, want, info = name)
    expect_identical(coo(m), coo(source$matrix), info = name)
    expect_identical(rownames(m), source$features[[2L]], info = name)
    expect_identical(colnames(m), source$barcodes, info = name)
    f <- sinr_open(fixture(paste0(name, ".sinr")))
    expect_identical(scinrcodec:::.names(f, "gene_ids"), source$features[[1L]], info = name)
  }
})

test_that("a max-error file keeps every zero and stays within its bound", {
  source <- read_10x_folder("frozen_pbmc_donor_a_v1")$matrix
  m <- read_sinr(fixture("frozen_pbmc_max_error_2.sinr"))
  got <- coo(m)
  want <- coo(source)
  expect_identical(got[c("genes", "cells")], want[c("genes", "cells")])
  expect_true(all(abs(got$values - want$values) <= 2))
  expect_identical(sinr_info(fixture("frozen_pbmc_max_error_2.sinr"))$mode, "max-error")
})

test_that("info of a lossless file of values decoded from a lossy one says how far they may be, as Python's", {
  info <- sinr_info(fixture("frozen_pbmc_lossy_concat.sinr"))
  expect_identical(c(info$mode, info$inputs_error), c("lossless", "2"))
  expect_output(print(info), "mode:      lossless of values decoded from lossy files \\(each within 2 of the counts")
  expect_true(is.na(sinr_info(fixture("visium.sinr"))$inputs_error))
  expect_false(any(grepl("decoded from", format(sinr_info(fixture("visium.sinr"))))))
})

test_that("a whole 10x .h5 file (format 2.1) reads as Python decodes it, and says what R leaves out", {
  path <- fixture("pbmc500_cellranger_h5.sinr")
  want <- methods::as(Matrix::readMM(fixture("pbmc500_cellranger_h5.expected.mtx")), "CsparseMatrix")
  names <- jsonlite::fromJSON(fixture("pbmc500_cellranger_h5.names.json"))
  m <- read_sinr(path)
  expect_identical(coo(m), coo(want))
  expect_identical(dimnames(m), list(names$gene_names, names$cell_names))
  info <- sinr_info(path)
  expect_identical(info$version, "2.1")
  expect_identical(info$contents$object, "10x-h5")
  expect_output(print(info), "contents:  a whole 10x-h5 file; parts h5")
  expect_output(print(info), "layout:    1 chunk of up to 587 cells, 4 bands, 27 tiles")  # one in the singular
  expect_message(sinr_to_sce(path), "also stores the 10x file.s attributes")
})

test_that("a raw matrix's file (format 3.2, its cell orders as byte planes) reads back identical in R", {
  path <- fixture("raw_like.sinr")  # pbmc4k's 80 cells at every 101st of 8,080 barcodes (make_fixtures.py)
  expect_identical(sinr_info(path)$version, "3.2")
  m <- read_sinr(path)
  expect_identical(dim(m), c(150L, 8080L))
  real <- seq(1L, 8080L, by = 101L)
  expect_identical(coo(m[, real]), coo(read_10x_folder("pbmc4k_v2_soupx_half")$matrix))
  expect_identical(length(m[, -real]@x), 0L)
  expect_identical(as.numeric(sinr_open(path)[, real[c(2, 80)]]), as.numeric(m[, real[c(2, 80)]]))
})
