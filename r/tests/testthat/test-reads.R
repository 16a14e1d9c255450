# Reads of an open file by index, name and logical vector, and errors that never end the session.

test_that("genes and cells read by index, name or logical agree with the whole matrix", {
  path <- fixture("pbmc4k_half_chunks32.sinr")
  f <- sinr_open(path)
  m <- read_sinr(path)
  expect_identical(dim(f), dim(m))
  expect_identical(dimnames(f), dimnames(m))
  expect_identical(f[], m)
  expect_identical(f[c(3, 1, 3), ], m[c(3, 1, 3), , drop = FALSE])
  expect_identical(f[, c(80, 2, 2, 40)], m[, c(80, 2, 2, 40), drop = FALSE])
  expect_identical(f[-(1:140), 1:10], m[-(1:140), 1:10, drop = FALSE])
  mask <- rep(c(TRUE, FALSE, FALSE), length.out = ncol(m))
  expect_identical(f[, mask], m[, mask, drop = FALSE])
  expect_identical(f[0, ], m[0, , drop = FALSE])  # zeros dropped, as R does: nothing, not everything
  expect_identical(f[, 0], m[, 0, drop = FALSE])
  expect_identical(f[c(0, 4, 0, 2), c(0, 9)], m[c(0, 4, 0, 2), c(0, 9), drop = FALSE])
  expect_identical(f[-c(0, 1), 1:3], m[-c(0, 1), 1:3, drop = FALSE])
  expect_error(f[c(-1, 2), ], "mix positive and negative", class = "sinr_index_error")
  genes <- rownames(m)[c(5, 60, 5)]
  expect_identical(f[genes, colnames(m)[1:3]], m[genes, 1:3, drop = FALSE])
  ids <- scinrcodec:::.names(f, "gene_ids")
  expect_identical(f[ids[7], ], m[7, , drop = FALSE])
  nz <- Matrix::summary(m)
  for (k in c(1, 100, nrow(nz)))
    expect_identical(sinr_entry(f, nz$i[[k]], colnames(m)[nz$j[[k]]]), nz$x[[k]])
  expect_identical(sinr_entry(f, 1, 1), m[1, 1])
  expect_identical(read_sinr(path, threads = 1L), read_sinr(path, threads = 4L))
  # drop = TRUE drops a dimension of one, as Matrix does; the default keeps a dgCMatrix
  expect_identical(f[genes[1], , drop = TRUE], m[5, , drop = TRUE])
  expect_identical(f[2, 3, drop = TRUE], m[2, 3])
  expect_identical(f[1:2, 3, drop = TRUE], m[1:2, 3])
  expect_identical(f[1:2, 3:4, drop = TRUE], m[1:2, 3:4])
  expect_error(f[1, 1, drop = NA], "drop must be TRUE or FALSE", class = "sinr_index_error")
})

test_that("gene and cell reads on one thread or several agree, and the threads option is read at each read", {
  path <- fixture("pbmc4k_half_chunks32.sinr")
  f <- sinr_open(path)
  m <- read_sinr(path)
  old <- options(scinrcodec.threads = 1L)
  on.exit(options(old))
  expect_identical(scinrcodec:::.threads(), 1L)
  one <- list(f[c(3, 1, 3, 90), ], f[, c(80, 2, 2, 40)])
  options(scinrcodec.threads = 3L)
  expect_identical(scinrcodec:::.threads(), 3L)  # the option again, at each read
  expect_identical(list(f[c(3, 1, 3, 90), ], f[, c(80, 2, 2, 40)]), one)
  expect_identical(one[[1]], m[c(3, 1, 3, 90), , drop = FALSE])
  options(scinrcodec.threads = NULL)
  expect_identical(scinrcodec:::.threads(), as.integer(min(scinrcodec:::.usable_cpus(), 64L)))
  for (bad in list(NA, c(2, 3), character(0), 0L, "2")) {  # a bad option is one thread, never an error
    options(scinrcodec.threads = bad)
    expect_identical(scinrcodec:::.threads(), 1L)
  }
})

test_that("a cgroup CPU quota of either version bounds the default threads, as Python's", {
  root <- tempfile("cgroups")
  put <- function(path, text) {
    dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
    writeLines(text, path)
  }
  put(file.path(root, "v2", "cpu.max"), "max 100000")
  put(file.path(root, "v2", "job", "cpu.max"), "150000 100000")
  put(file.path(root, "v2.cgroup"), "0::/job")
  expect_identical(scinrcodec:::.cgroup_cpu_quota(file.path(root, "v2.cgroup"), file.path(root, "v2")), 2L)
  v1 <- file.path(root, "v1", "cpu,cpuacct")
  for (step in list(c("-1", ""), c("300000", "docker"), c("400000", file.path("docker", "abc")))) {
    put(file.path(v1, step[2], "cpu.cfs_quota_us"), step[1])
    put(file.path(v1, step[2], "cpu.cfs_period_us"), "100000")
  }
  put(file.path(root, "v1.cgroup"), c("3:cpu,cpuacct:/docker/abc", "4:memory:/docker/abc"))
  expect_identical(scinrcodec:::.cgroup_cpu_quota(file.path(root, "v1.cgroup"), file.path(root, "v1")), 3L)
  put(file.path(root, "none.cgroup"), "3:cpu,cpuacct:/")
  expect_identical(scinrcodec:::.cgroup_cpu_quota(file.path(root, "none.cgroup"), file.path(root, "v1")), NA_integer_)
  expect_identical(scinrcodec:::.cgroup_cpu_quota(file.path(root, "absent"), file.path(root, "v1")), NA_integer_)
  unlink(root, recursive = TRUE)
  held <- environment(scinrcodec:::.usable_cpus)  # the quota asked once per session, here set
  saved <- held$quota
  on.exit(assign("quota", saved, envir = held), add = TRUE)
  assign("quota", 1L, envir = held)
  expect_identical(scinrcodec:::.usable_cpus(), 1L)
  assign("quota", NA_integer_, envir = held)
  expect_identical(scinrcodec:::.usable_cpus(), if (.Platform$OS.type == "unix" && length(parallel::mcaffinity()))
    length(parallel::mcaffinity()) else parallel::detectCores(logical = TRUE))
})

test_that("the default threads are the CPUs this process may use, not every core of the machine", {
  allowed <- if (.Platform$OS.type == "unix") parallel::mcaffinity() else NULL
  skip_if(length(allowed) < 2L, "needs a CPU affinity of two CPUs or more to narrow")
  old <- options(scinrcodec.threads = NULL)
  on.exit({
    parallel::mcaffinity(allowed)
    options(old)
  })
  parallel::mcaffinity(allowed[1])
  expect_identical(scinrcodec:::.threads(), 1L)
  f <- sinr_open(fixture("pbmc4k_half_chunks32.sinr"))
  expect_identical(f[, c(80, 2)], read_sinr(fixture("pbmc4k_half_chunks32.sinr"), threads = 2L)[, c(80, 2)])
})

test_that("a handle saved and loaded opens its file again", {
  f <- sinr_open(fixture("pbmc500_50genes.sinr"))
  saved <- tempfile(fileext = ".rds")
  saveRDS(f, saved)
  again <- readRDS(saved)
  expect_identical(again[1:5, 1:5], f[1:5, 1:5])
})

test_that("a saved handle opens the same version of its file, from any folder, or refuses", {
  folder <- tempfile()
  dir.create(folder)
  file.copy(fixture("pbmc500_50genes.sinr"), file.path(folder, "x.sinr"))
  old <- setwd(folder)
  f <- sinr_open("x.sinr")  # relative: kept absolute
  s <- SinrMatrix("x.sinr")
  setwd(old)
  saved <- tempfile(fileext = ".rds")
  saveRDS(list(f = f, s = s), saved)
  again <- readRDS(saved)  # from another folder
  expect_identical(again$f[1:5, 1:5], f[1:5, 1:5])
  expect_equal(sum(again$s[1:10, 1:10]), sum(f[1:10, 1:10]))
  file.copy(fixture("pbmc4k_half_chunks32.sinr"), file.path(folder, "x.sinr"), overwrite = TRUE)
  replaced <- readRDS(saved)  # its names, shape and summaries are the old file's: no read of the new one
  expect_error(replaced$f[1:5, 1:5], "the file changed since this handle was opened", class = "sinr_file_changed_error")
  expect_error(as.matrix(replaced$s[1:5, 1:5]), class = "sinr_file_changed_error")
  file.copy(fixture("pbmc500_50genes.sinr"), file.path(folder, "x.sinr"), overwrite = TRUE)
  older <- readRDS(saved)  # as saved before headers held the identity: the rest of the header must match
  older$f@state$header$identity <- NULL
  expect_identical(older$f[1:5, 1:5], f[1:5, 1:5])
  file.copy(fixture("pbmc4k_half_chunks32.sinr"), file.path(folder, "x.sinr"), overwrite = TRUE)
  older <- readRDS(saved)
  older$f@state$header$identity <- NULL
  expect_error(older$f[1:5, 1:5], class = "sinr_file_changed_error")
})

test_that("bad arguments of the constructors and readers are classed errors", {
  expect_error(SinrMatrix(tempfile()), class = "sinr_invalid_input_error")
  expect_error(sinr_open(fixture("pbmc500_50genes.sinr"), matrix = c("X", "Y")), "one matrix name",
               class = "sinr_invalid_input_error")
  for (threads in list("a", Inf, 1e10, 0, 2.5))
    expect_error(read_sinr(fixture("pbmc500_50genes.sinr"), threads = threads), class = "sinr_invalid_input_error")
  f <- sinr_open(fixture("pbmc500_50genes.sinr"))
  expect_error(f[-Inf, ], "whole numbers", class = "sinr_index_error")
})

test_that("bad paths, files and keys are classed R errors with one-line messages", {
  expect_error(sinr_open(tempfile()), class = "sinr_invalid_input_error")
  expect_error(read_sinr(""), "path must be one file name", class = "sinr_invalid_input_error")
  expect_error(sinr_open(tempdir()), "is a folder", class = "sinr_format_error")
  readme <- file.path(repo_root(), "README.md")
  expect_error(read_sinr(readme), "not a .sinr file (bad magic)", fixed = TRUE, class = "sinr_format_error")
  f <- sinr_open(fixture("pbmc500_50genes.sinr"))
  expect_error(f[51, ], "gene index 51 out of range for 50 genes", class = "sinr_index_error")
  expect_error(f[, "nope"], "no cell named 'nope'", class = "sinr_key_error")
  expect_error(f[, c(TRUE, FALSE)], "boolean cell mask has length 2, expected 80", class = "sinr_index_error")
  expect_error(f[1.5, ], class = "sinr_index_error")
  expect_error(sinr_open(fixture("pbmc500_50genes.sinr"), matrix = "raw/X"), "no matrix named 'raw/X'",
               class = "sinr_key_error")
  truncated <- tempfile(fileext = ".sinr")
  bytes <- readBin(fixture("pbmc500_50genes.sinr"), "raw", 1e6)
  writeBin(bytes[seq_len(length(bytes) - 100)], truncated)
  expect_error(read_sinr(truncated), "no .sinr trailer", class = "sinr_corrupt_file_error")
})

test_that("names are the stored ones however R reads them: UTF-8, empty and shared names, saved and changed", {
  path <- fixture("odd_names.sinr")  # make_fixtures.odd_names
  genes <- c("G\u00e9n-\u03b1", "", "\u57fa\u56e0", "g4")
  cells <- c("Zelle-\u00e4-1", "\u7d30\u80de-2", "", "\U0001f9ec-4", "Zelle-\u00e4-1", "plain-6")
  m <- read_sinr(path)
  expect_identical(dimnames(m), list(genes, cells))
  # R makes a name's string as it first reads it: one, some, then every one
  f <- sinr_open(path)
  expect_identical(colnames(f)[[4L]], cells[[4L]])
  expect_identical(colnames(f)[c(2, 2, 3)], cells[c(2, 2, 3)])
  expect_identical(colnames(f), cells)
  expect_identical(Encoding(colnames(f)), Encoding(cells))
  expect_identical(rownames(f), genes)
  expect_false(anyNA(colnames(f)))
  # every one at once (R asks for the vector's memory), on a handle none was read from
  expect_identical(match(cells, colnames(sinr_open(path))), c(1L, 2L, 3L, 4L, 1L, 6L))
  expect_identical(f[genes[[1L]], cells[[2L]]], m[1L, 2L, drop = FALSE])
  expect_error(f[, cells[[1L]]], "2 cells are named", class = "sinr_key_error")
  expect_identical(dimnames(SinrMatrix(path)[2:3, c(6, 4)]), list(genes[2:3], cells[c(6, 4)]))
  # saved before any is read, and changed: the copy changes, never the names of the file
  saved <- tempfile(fileext = ".rds")
  saveRDS(dimnames(sinr_open(path)), saved)
  expect_identical(readRDS(saved), list(genes, cells))
  names <- colnames(f)
  names[[1L]] <- "x"
  expect_identical(colnames(f), cells)
  unread <- scinrcodec:::.sinr_names(scinrcodec:::.handle(sinr_open(path)), "cell_names")
  unread[[2L]] <- NA
  expect_true(anyNA(unread))
  expect_identical(unread, replace(cells, 2L, NA))
  # a NUL byte, which the writer refuses and no R string can hold, is refused where the names are read
  expect_error(colnames(sinr_open(fixture("nul_name.sinr"))), "nul_name.sinr: cell_names holds a name with a NUL byte", class = "sinr_value_error")
})

test_that("reads by name find what match() finds: any order, empty names, ids, other encodings, unknown names", {
  path <- fixture("odd_names.sinr")  # make_fixtures.odd_names: cells 1 and 5 share a name, gene 2 and cell 3 are ""
  m <- read_sinr(path)
  genes <- rownames(m)
  cells <- colnames(m)
  f <- sinr_open(path)
  expect_identical(f[genes[c(3, 1, 3)], cells[c(6, 3, 2, 6)]], m[c(3, 1, 3), c(6, 3, 2, 6)])
  expect_identical(f[c(4, 2), cells[c(4, 3)]], m[c(4, 2), c(4, 3)])  # positive indices with names
  expect_identical(f[c("", "g4"), 6], m[c(2, 4), 6, drop = FALSE])
  expect_identical(sinr_entry(f, "", ""), m[2, 3])
  expect_identical(f[c("id3", genes[[1L]]), factor(cells[[2L]])], m[c(3, 1), 2, drop = FALSE])  # a gene by its id
  # a query in latin1 or the native encoding is the same name; one marked "bytes" none, as for match()
  latin1 <- iconv(cells[[1L]], "UTF-8", "latin1")
  expect_identical(Encoding(latin1), "latin1")
  expect_error(f[, latin1], "2 cells are named", class = "sinr_key_error")
  expect_identical(f[, enc2native(cells[[6L]])], m[, 6, drop = FALSE])
  bytes <- `Encoding<-`(cells[[4L]], "bytes")
  expect_identical(match(bytes, cells), NA_integer_)
  expect_error(f[, c(cells[[2L]], bytes)], "no cell named", class = "sinr_key_error")  # match() errors untyped
  expect_error(f[, `Encoding<-`(latin1, "bytes")], "no cell named 'Zelle-\\xe4-1'", fixed = TRUE, class = "sinr_key_error")
  expect_error(f[, c(cells[[2L]], "nope")], "no cell named 'nope'", class = "sinr_key_error")
  expect_error(f[, "plain-"], "no cell named 'plain-'", class = "sinr_key_error")
  expect_error(f[c(genes[[1L]], "G\u00e9n"), ], "no gene named 'G\u00e9n'", class = "sinr_key_error")
  expect_error(f[, c(cells[[2L]], NA)], "cell index holds NA", class = "sinr_index_error")
  # a handle saved and loaded after a lookup looks names up again
  saved <- tempfile(fileext = ".rds")
  saveRDS(f, saved)
  expect_identical(readRDS(saved)[genes[[3L]], cells[c(2, 6)]], m[3, c(2, 6), drop = FALSE])
  expect_identical(sinr_open(fixture("no_cells.sinr"))[, character(0)], read_sinr(fixture("no_cells.sinr")))
})

test_that("a read by name makes R strings of the names it reads, not of every name of the file", {
  path <- fixture("pbmc500_cellranger_h5.sinr")  # 587 cells
  wanted <- colnames(sinr_open(path))[c(5, 9)]
  kept <- function(read) nodes_kept(function() sinr_open(path), read)
  every <- kept(function(f) colnames(f)[seq_len(ncol(f))])
  expect_gt(every, ncol(sinr_open(path)))
  for (read in list(function(f) f[, wanted], function(f) sinr_entry(f, 1, wanted[[2L]]))) {
    kept(read)  # its functions compiled and their methods cached
    expect_lt(kept(read), every / 4)
  }
})

test_that("a name that several genes or cells share is refused, as Python refuses it, never the first taken", {
  f <- sinr_open(fixture("duplicate_names.sinr"))  # gene 8 named as gene 4 (ids differ), cell 11 as cell 3
  genes <- rownames(f)
  cells <- colnames(f)
  expect_identical(genes[[8]], genes[[4]])
  ids <- scinrcodec:::.names(f, "gene_ids")
  expect_error(f[genes[[4]], ], sprintf("2 genes are named '%s' (ids '%s', '%s'): name one by its id or index",
                                        genes[[4]], ids[[4]], ids[[8]]), fixed = TRUE, class = "sinr_key_error")
  expect_error(f[c(genes[[1]], genes[[8]]), 1:3], "2 genes are named", class = "sinr_key_error")
  expect_error(sinr_entry(f, genes[[4]], 1), "2 genes are named", class = "sinr_key_error")
  expect_error(f[, cells[[3]]], sprintf("2 cells are named '%s' (indices 3, 11): name one by index", cells[[3]]),
               fixed = TRUE, class = "sinr_key_error")
  m <- read_sinr(fixture("duplicate_names.sinr"))
  expect_identical(f[ids[[8]], ], m[8, , drop = FALSE])  # by its id: the one gene
  expect_identical(f[c(genes[[1]], genes[[2]]), cells[[5]]], m[1:2, 5, drop = FALSE])
})

test_that("indices R's matrices read otherwise, and NA, are refused rather than read as genes", {
  f <- sinr_open(fixture("pbmc500_50genes.sinr"))
  expect_error(f[5], "x\\[genes, cells\\]", class = "sinr_index_error")  # R's element 5 of a matrix
  expect_error(f[cbind(1:2, 3:4)], class = "sinr_index_error")
  expect_error(f[cbind(1:2, 3:4), ], "not a matrix", class = "sinr_index_error")
  expect_error(f[1, 2, 3], "x\\[genes, cells\\]", class = "sinr_index_error")
  expect_error(f[NA, ], "gene index holds NA", class = "sinr_index_error")
  expect_error(f[NA_integer_, 1], "gene index holds NA", class = "sinr_index_error")
  expect_error(f[c(NA, rep(TRUE, 49)), 1], "gene index holds NA", class = "sinr_index_error")
  expect_error(sinr_entry(f, 1, NA), "cell index holds NA", class = "sinr_index_error")
  expect_error(f[1e300, 1], "gene index 1e+300 out of range for 50 genes", fixed = TRUE, class = "sinr_index_error")
  expect_error(sinr_entry(fixture("pbmc500_50genes.sinr"), 1, 1), "x must be a SinrFile",
               class = "sinr_invalid_input_error")
  expect_identical(f[2, 3, drop = FALSE], f[2, 3])  # drop named: still a read of genes and cells
})
