# A file that holds a whole AnnData (fixtures/anndata_whole.sinr, see make_fixtures.py) gives its
# obs and var columns as colData/rowData and Seurat metadata, equal to what Python's anndata reads
# (anndata_whole.expected.json), in the matrix's order of cells and genes; a whole 10x file gives
# its per-feature fields; what is not mapped is said.

skip_if_not_installed("hdf5r")

expected_frames <- function() jsonlite::fromJSON(fixture("anndata_whole.expected.json"), simplifyVector = FALSE)

# A column of the expected JSON as R holds it.
expected_column <- function(column) {
  values <- column$values
  missing <- vapply(values, is.null, logical(1L))
  values[missing] <- NA
  values <- unlist(values)
  if (identical(column$dtype, "category"))
    return(factor(as.character(values), levels = unlist(column$categories), ordered = column$ordered))
  if (column$dtype %in% c("bool", "boolean")) return(as.logical(values))
  if (column$dtype %in% c("object", "string")) return(as.character(values))
  as.numeric(values)
}

# Every column of a stored frame in the same order and with the same values as anndata read them.
expect_frame <- function(got, want, part) {
  expect_identical(rownames(got), unlist(want$index), info = part)
  expect_identical(colnames(got), unlist(want$order), info = part)
  for (name in unlist(want$order)) {
    value <- got[[name]]
    expected <- expected_column(want$columns[[name]])
    if (is.factor(expected)) {
      expect_identical(value, expected, info = paste(part, name))
    } else {
      expect_identical(is.na(value), is.na(expected), info = paste(part, name))
      expect_identical(if (is.numeric(expected)) as.numeric(value) else value, expected, info = paste(part, name))
    }
  }
}

test_that("a whole AnnData gives obs and var as colData and rowData, as anndata reads them", {
  path <- fixture("anndata_whole.sinr")
  want <- expected_frames()
  said <- capture_messages(sce <- sinr_to_sce(path, delayed = FALSE))
  expect_match(said, "also stores the AnnData parts obsm, uns, raw,", all = FALSE)
  expect_match(said, "also holds the matrices layers/counts, raw/X", all = FALSE)
  expect_identical(colnames(sce), unlist(want$obs$index))
  expect_identical(rownames(sce), unlist(want$var$index))
  expect_identical(dimnames(sce), dimnames(read_sinr(path)))
  expect_frame(SummarizedExperiment::colData(sce), want$obs, "obs")
  expect_frame(SummarizedExperiment::rowData(sce), want$var, "var")
  expect_true(is.ordered(SummarizedExperiment::colData(sce)$level))
  expect_false(is.ordered(SummarizedExperiment::colData(sce)$cluster))
})

test_that("every matrix of the AnnData gets its own genes' columns: a layer var's, raw.X raw.var's", {
  path <- fixture("anndata_whole.sinr")
  want <- expected_frames()
  layer <- suppressMessages(sinr_to_sce(path, matrix = "layers/counts"))
  expect_frame(SummarizedExperiment::colData(layer), want$obs, "obs")
  expect_frame(SummarizedExperiment::rowData(layer), want$var, "var")
  said <- capture_messages(raw <- sinr_to_sce(path, matrix = "raw/X"))
  expect_match(said, "also stores the AnnData parts var, obsm, uns, which", all = FALSE)  # no empty part raw/
  expect_identical(dim(raw), c(50L, 80L))
  expect_frame(SummarizedExperiment::colData(raw), want$obs, "obs")
  expect_frame(SummarizedExperiment::rowData(raw), want[["raw/var"]], "raw/var")
})

test_that("a whole AnnData gives obs as Seurat meta.data and var as the assay's feature metadata", {
  path <- fixture("anndata_whole.sinr")
  want <- expected_frames()
  object <- suppressMessages(sinr_to_seurat(path))
  meta <- object[[]]
  expect_identical(rownames(meta), unlist(want$obs$index))
  for (name in unlist(want$obs$order)) {
    expected <- expected_column(want$obs$columns[[name]])
    got <- meta[[name]]
    expect_identical(if (is.numeric(expected)) as.numeric(got) else got, expected, info = name)
  }
  features <- object[["RNA"]][[]]
  for (name in unlist(want$var$order)) {
    expected <- expected_column(want$var$columns[[name]])
    got <- features[[name]]
    expect_identical(if (is.numeric(expected)) as.numeric(got) else got, expected, info = name)
  }
})

test_that("Seurat's renamed features keep the stored names; a file of no cells is a classed error", {
  object <- suppressMessages(sinr_to_seurat(fixture("duplicate_names.sinr")))
  stored <- rownames(sinr_open(fixture("duplicate_names.sinr")))
  expect_false(identical(rownames(object), stored))  # made unique, underscores dashed
  expect_identical(object[["RNA"]][["gene_names"]][[1L]], stored)
  whole <- suppressMessages(sinr_to_seurat(fixture("anndata_whole.sinr")))  # var holds the names as its index only
  expect_identical(whole[["RNA"]][["gene_names"]][[1L]], rownames(sinr_open(fixture("anndata_whole.sinr"))))
  odd <- suppressMessages(sinr_to_seurat(fixture("odd_names.sinr")))  # gene 2 and cell 3 are ""
  expect_identical(rownames(odd)[[2L]], "gene-2")
  expect_identical(colnames(odd)[c(3L, 5L)], c("cell-3", "Zelle-ä-1.1"))
  expect_identical(unname(as.matrix(SeuratObject::GetAssayData(odd, slot = "counts"))),
                   unname(as.matrix(read_sinr(fixture("odd_names.sinr")))))
  expect_identical(odd[["RNA"]][["gene_names"]][[1L]], rownames(sinr_open(fixture("odd_names.sinr"))))
  expect_error(sinr_to_seurat(fixture("no_cells.sinr")), "40 genes x 0 cells: a Seurat object needs",
               class = "sinr_invalid_input_error")
  expect_identical(dim(sinr_to_sce(fixture("no_cells.sinr"), delayed = FALSE)), c(40L, 0L))
})

test_that("64-bit integers R's doubles round are read with a warning that names their column", {
  expect_warning(sce <- suppressMessages(sinr_to_sce(fixture("big_integers.sinr"))),
                 "obs/id64 holds integers beyond 2\\^53")
  expect_identical(SummarizedExperiment::colData(sce)$id64[[1L]], 2^53)
})

test_that("a whole 10x file gives its per-feature fields (genome) as rowData", {
  path <- fixture("pbmc500_cellranger_h5.sinr")
  source <- hdf5r::H5File$new(file.path(repo_root(), "tests", "data", "pbmc500_cellranger.h5"), mode = "r")
  on.exit(source$close_all())
  expect_message(sce <- sinr_to_sce(path), "also stores the 10x file's attributes \\(chemistry_description")
  rows <- SummarizedExperiment::rowData(sce)
  expect_identical(colnames(rows), c("gene_ids", "gene_names", "feature_types", "genome"))
  expect_identical(rows$genome, as.vector(source[["matrix/features/genome"]]$read()))
  expect_identical(rows$gene_ids, as.vector(source[["matrix/features/id"]]$read()))
  object <- suppressMessages(sinr_to_seurat(path))
  expect_identical(object[["RNA"]][[]]$genome, rows$genome)
})

test_that("a Cell Ranger 2 file of two genomes reads as one matrix, each gene's genome in rowData", {
  path <- fixture("cellranger2_two_genomes.sinr")  # hg19 genes over cells 1-400, mm10 over 201-587 (make_fixtures.py)
  want <- methods::as(Matrix::readMM(fixture("cellranger2_two_genomes.expected.mtx")), "CsparseMatrix")
  names <- jsonlite::fromJSON(fixture("cellranger2_two_genomes.names.json"))
  sce <- suppressMessages(sinr_to_sce(path, delayed = FALSE))
  rows <- SummarizedExperiment::rowData(sce)
  expect_identical(rows$genome, names$genomes)
  expect_identical(rows$gene_ids, names$gene_ids)
  expect_identical(colnames(sce), names$cell_names)
  counts <- methods::as(SummarizedExperiment::assay(sce, "counts"), "CsparseMatrix")
  expect_identical(coo(counts), coo(want))
  hg19 <- rows$genome == "hg19"
  expect_identical(sum(counts[hg19, 401:587]), 0)  # cells a genome's group does not list are 0 there
  expect_identical(sum(counts[!hg19, 1:200]), 0)
  expect_gt(sum(counts[hg19, 1:400]), 0)
})

test_that("columns of other types are listed as not mapped, never dropped silently", {
  image <- tempfile(fileext = ".h5")
  on.exit(unlink(image))
  file <- hdf5r::H5File$new(image, mode = "w")
  group <- file$create_group("obs")
  group[["_index"]] <- c("a", "b", "c")
  group[["good"]] <- c(1.5, 2.5, 3.5)
  group[["wide"]] <- matrix(1:6, 3L, 2L)
  group[["odd"]] <- c(1L, 2L, 3L)
  for (name in c("_index", "good", "wide")) hdf5r::h5attr(group[[name]], "encoding-type") <- "array"
  hdf5r::h5attr(group[["odd"]], "encoding-type") <- "awkward-array"
  hdf5r::h5attr(group, "_index") <- "_index"
  hdf5r::h5attr(group, "column-order") <- c("good", "wide", "odd", "absent")
  read <- scinrcodec:::.read_frame(group, 3, "obs")
  file$close_all()
  expect_identical(as.list(read$frame), list(good = c(1.5, 2.5, 3.5)))
  expect_identical(read$unmapped, c("obs/wide", "obs/odd", "obs/absent"))
  x <- sinr_open(fixture("anndata_whole.sinr"))
  said <- capture_messages(scinrcodec:::.report_unmapped(x, list(parts = character(), unmapped = read$unmapped)))
  expect_match(said, "are not mapped: obs/wide, obs/odd, obs/absent", all = FALSE)
})

test_that("an image that cannot be read is a corrupt file, an element the file lacks too", {
  x <- sinr_open(fixture("anndata_whole.sinr"))
  expect_error(scinrcodec:::.with_image(x, "obs", function(file) stop("bad\n  image")),
               "section 'anndata.obs' does not hold what its contents entry says (bad image)", fixed = TRUE,
               class = "sinr_corrupt_file_error")
  expect_error(scinrcodec:::.with_image(x, "obsp", function(file) NULL), "the file stores no element 'obsp'",
               class = "sinr_corrupt_file_error")
  expect_identical(scinrcodec:::.with_image(x, "obs", function(file) names(file)), "obs")
})

test_that("a file of one matrix gives its names only, and says nothing of parts", {
  expect_silent(sce <- sinr_to_sce(fixture("pbmc500_50genes.sinr")))
  expect_identical(colnames(SummarizedExperiment::rowData(sce)), c("gene_ids", "gene_names", "feature_types"))
  expect_identical(ncol(SummarizedExperiment::colData(sce)), 0L)
})

test_that("frames without columns and categoricals without categories map (they are common)", {
  path <- fixture("anndata_empty_frames.sinr")
  sce <- sinr_to_sce(path, delayed = FALSE)
  expect_identical(ncol(SummarizedExperiment::colData(sce)), 0L)
  expect_identical(rownames(SummarizedExperiment::colData(sce)), colnames(sce))
  unknown <- SummarizedExperiment::rowData(sce)$unknown
  expect_true(is.factor(unknown) && length(levels(unknown)) == 0L && all(is.na(unknown)))
  expect_identical(length(unknown), nrow(sce))
})

test_that("asking a file of matrices only for a stored element is an error, not a crash", {
  f <- sinr_open(fixture("pbmc500_50genes.sinr"))
  expect_error(scinrcodec:::.native(scinrcodec:::.sinr_element_image(scinrcodec:::.handle(f), "obs")),
               "stores no element")
})

# What a child R session says of sinr_to_sce on the whole AnnData fixture after `setup` (R code),
# run by bash after `shell` (a ulimit, say): the class of the error (or of the result), its message,
# and how many files its temporary folder has left.
child_sce <- function(setup = "", shell = "") {
  script <- tempfile(fileext = ".R")
  on.exit(unlink(script))
  writeLines(c("suppressPackageStartupMessages(library(scinrcodec))", setup,
               sprintf("e <- tryCatch(suppressMessages(sinr_to_sce('%s')), error = identity)",
                       normalizePath(fixture("anndata_whole.sinr"))),
               "cat(class(e)[[1L]], if (inherits(e, 'error')) conditionMessage(e) else '', sep = '\\n')",
               "cat('left:', length(list.files(tempdir())), '\\n')"), script)
  rscript <- file.path(R.home("bin"), "Rscript")
  system2("bash", c("-c", shQuote(sprintf("%s exec '%s' '%s'", shell, rscript, script))), stdout = TRUE, stderr = TRUE,
          env = paste0("R_LIBS=", shQuote(paste(.libPaths(), collapse = ":"))))
}

test_that("a temporary folder too full for a section's image is said, not taken for a corrupt file", {
  skip_on_os("windows")
  skip_if(Sys.which("bash") == "", "needs bash")
  # files may not pass 1 KiB (SIGXFSZ ignored: a write past it fails with EFBIG, as one to a full
  # disk fails with ENOSPC)
  said <- child_sce(shell = "ulimit -f 1; trap '' XFSZ;")
  expect_identical(said[[1L]], "sinr_output_error", info = paste(said, collapse = "\n"))
  expect_match(said[[2L]], paste0("anndata_whole.sinr: cannot read section 'anndata.obs': 1,024 of its [0-9,]+ ",
                                  "bytes written to a temporary file in "))
  expect_match(said[[2L]], "(is the folder full or not writable? TMPDIR names another)", fixed = TRUE)
  expect_identical(said[[3L]], "left: 0 ")
})

test_that("a temporary folder that a cleaner of /tmp removed is made again", {
  skip_on_os("windows")
  skip_if(Sys.which("bash") == "", "needs bash")
  said <- child_sce(setup = "unlink(tempdir(), recursive = TRUE)")
  expect_identical(said[1:2], c("SingleCellExperiment", ""), info = paste(said, collapse = "\n"))
  expect_identical(said[[3L]], "left: 0 ")
})
