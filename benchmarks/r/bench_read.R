# Whole reads and row sums of one matrix in R, each in a fresh R process: read_sinr() and
# DelayedArray::rowSums over SinrMatrix against the readers of the same matrix's other files that
# are installed (Matrix::readMM on a 10x mtx folder; DropletUtils::read10xCounts, Seurat::Read10X_h5
# and HDF5Array::TENxMatrix on a 10x .h5). Prints a markdown table: wall and CPU seconds (every
# thread) of the read inside the process, best of the repeats, and the process's peak resident
# memory (GNU time), next to an empty R process's. On a shared machine CPU seconds are the steadier.
#
# Usage: Rscript benchmarks/r/bench_read.R FILE.sinr [--mtx DIR] [--h5 FILE.h5] [--repeats N] [--lib DIR]
args <- commandArgs(TRUE)
option <- function(name, default = NULL) {
  at <- match(name, args)
  if (is.na(at)) default else args[[at + 1L]]
}
sinr <- normalizePath(args[[1L]])
mtx <- option("--mtx")
h5 <- option("--h5")
repeats <- as.integer(option("--repeats", "3"))
lib <- option("--lib", "")
have <- function(pkg) requireNamespace(pkg, quietly = TRUE)

# One measurement: `setup` then `code` in a fresh Rscript; returns c(seconds, cpu, peak MiB).
measure <- function(setup, code) {
  script <- tempfile(fileext = ".R")
  writeLines(c(if (nzchar(lib)) sprintf(".libPaths(c(%s, .libPaths()))", deparse(lib)),
               "suppressPackageStartupMessages({", setup, "})",
               sprintf("t <- system.time({%s})", code),
               "cat(t[['elapsed']], '\\n', t[['user.self']] + t[['sys.self']], '\\n')"), script)
  out <- system2("/usr/bin/time", c("-f", "'%M'", "Rscript", script), stdout = TRUE, stderr = TRUE)
  nums <- suppressWarnings(as.numeric(out))
  nums <- nums[!is.na(nums)]
  c(seconds = nums[[1L]], cpu = nums[[2L]], peak_mib = nums[[length(nums)]] / 1024)
}
best <- function(setup, code) {
  runs <- vapply(seq_len(repeats), function(i) measure(setup, code), numeric(3L))
  c(seconds = min(runs[1L, ]), cpu = min(runs[2L, ]), peak_mib = max(runs[3L, ]))
}

rows <- list()
add <- function(what, setup, code) rows[[what]] <<- best(setup, code)
add("empty R process (baseline)", "", "NULL")
add("scinrcodec::read_sinr (all cores)", "library(scinrcodec)", sprintf("m <- read_sinr(%s)", deparse(sinr)))
add("scinrcodec::read_sinr (1 thread)", "library(scinrcodec)",
    sprintf("m <- read_sinr(%s, threads = 1L)", deparse(sinr)))
add("rowSums(SinrMatrix)", "library(scinrcodec)", sprintf("s <- DelayedArray::rowSums(SinrMatrix(%s))", deparse(sinr)))
if (!is.null(mtx)) add("Matrix::readMM (10x mtx.gz)", "library(Matrix)",
                       sprintf("m <- readMM(file.path(%s, 'matrix.mtx.gz'))", deparse(mtx)))
if (!is.null(h5) && have("DropletUtils"))
  add("DropletUtils::read10xCounts (.h5)", "library(DropletUtils)", sprintf("m <- read10xCounts(%s)", deparse(h5)))
if (!is.null(h5) && have("Seurat"))
  add("Seurat::Read10X_h5 (.h5)", "library(Seurat)", sprintf("m <- Read10X_h5(%s)", deparse(h5)))
if (!is.null(h5) && have("HDF5Array"))
  add("rowSums(TENxMatrix) (.h5)", "library(HDF5Array)",
      sprintf("s <- DelayedArray::rowSums(TENxMatrix(%s, 'matrix'))", deparse(h5)))

cat(sprintf("%s: %s, %s\n\n", sinr, R.version.string, format(Sys.time(), "%Y-%m-%d")))
cat("| read | seconds | CPU seconds | peak MiB |\n|---|---:|---:|---:|\n")
for (what in names(rows))
  cat(sprintf("| %s | %.3f | %.3f | %.0f |\n", what, rows[[what]][["seconds"]], rows[[what]][["cpu"]],
              rows[[what]][["peak_mib"]]))
