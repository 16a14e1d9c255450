# Whole reads and row sums of one matrix in R, each in a fresh R process: read_sinr() and
# DelayedArray::rowSums over SinrMatrix against the readers of the same matrix's other files that
# are installed (Matrix::readMM on a 10x mtx folder; DropletUtils::read10xCounts, Seurat::Read10X_h5
# and HDF5Array::TENxMatrix on a 10x .h5). Prints a markdown table and, with --csv, appends the
# rows to a CSV: per measurement the median over the repeats of the wall and CPU seconds (every
# thread) of the read alone (package loading excluded), of the process's resident memory after
# loading the packages and of its peak (Linux /proc/self/status: VmRSS, VmHWM), and the range of
# the 1-minute load average when the runs started. On a shared machine CPU seconds are the steadier.
# Row sums run at each DelayedArray block size of --block-sizes (bytes; default DelayedArray's 1e8).
# --rowsums-only measures the row sums alone (and the empty process), not the whole reads.
# --r-vsize SIZE starts each R process with that vector heap (R_VSIZE, e.g. 4G): a read that
# allocates its result then triggers none of R's full garbage collections, whose cost grows with
# the packages loaded (about 0.3 s once Matrix and DelayedArray are), so the reads' own work shows.
#
# Usage: Rscript benchmarks/r/bench_read.R FILE.sinr [--mtx DIR] [--h5 FILE.h5] [--repeats N]
#          [--lib DIR] [--label NAME] [--csv FILE] [--block-sizes B1,B2,...] [--r-vsize SIZE]
#          [--rowsums-only]
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
label <- option("--label", basename(sinr))
csv <- option("--csv")
block_sizes <- as.numeric(strsplit(option("--block-sizes", "1e8"), ",", fixed = TRUE)[[1L]])
vsize <- option("--r-vsize", "")
reads <- !("--rowsums-only" %in% args)
if (nzchar(lib)) .libPaths(c(lib, .libPaths()))
have <- function(pkg) requireNamespace(pkg, quietly = TRUE)

rss_mib <- function(field) {
  line <- grep(paste0("^", field, ":"), readLines("/proc/self/status"), value = TRUE)
  as.numeric(gsub("[^0-9]", "", line)) / 1024
}

# One measurement: `setup` then `code` in a fresh Rscript; c(seconds, cpu, loaded MiB, peak MiB, load).
measure <- function(setup, code) {
  script <- tempfile(fileext = ".R")
  on.exit(unlink(script))
  writeLines(c(if (nzchar(lib)) sprintf(".libPaths(c(%s, .libPaths()))", deparse(lib)),
               "suppressPackageStartupMessages({", setup, "})",
               paste("rss_mib <-", paste(deparse(rss_mib), collapse = "\n")),
               "loaded <- rss_mib('VmRSS')",
               sprintf("t <- system.time({%s})", code),
               "cat(t[['elapsed']], t[['user.self']] + t[['sys.self']], loaded, rss_mib('VmHWM'), '\\n')"), script)
  load <- as.numeric(strsplit(readLines("/proc/loadavg"), " ", fixed = TRUE)[[1L]][[1L]])
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), script, stdout = TRUE, stderr = TRUE,
                                 env = if (nzchar(vsize)) paste0("R_VSIZE=", vsize)))
  nums <- suppressWarnings(as.numeric(strsplit(trimws(out[[length(out)]]), " ", fixed = TRUE)[[1L]]))
  if (length(nums) != 4L || anyNA(nums)) stop("the run of `", code, "` failed:\n", paste(out, collapse = "\n"))
  c(seconds = nums[[1L]], cpu = nums[[2L]], loaded_mib = nums[[3L]], peak_mib = nums[[4L]], load = load)
}
median_of <- function(setup, code) {
  runs <- vapply(seq_len(repeats), function(i) measure(setup, code), numeric(5L))
  c(apply(runs[1:4, , drop = FALSE], 1L, stats::median), load_min = min(runs[5L, ]), load_max = max(runs[5L, ]))
}

rows <- list()
add <- function(what, setup, code) {
  message(sprintf("%s: %s", label, what))
  rows[[what]] <<- median_of(setup, code)
}
q <- function(x) deparse(x)
block <- function(size) sprintf("DelayedArray::setAutoBlockSize(%.0f)", size)
add("empty R process (baseline)", "", "NULL")
if (reads) {
  add("scinrcodec::read_sinr (all cores)", "library(scinrcodec)", sprintf("m <- read_sinr(%s)", q(sinr)))
  add("scinrcodec::read_sinr (1 thread)", "library(scinrcodec)", sprintf("m <- read_sinr(%s, threads = 1L)", q(sinr)))
}
for (size in block_sizes)
  add(sprintf("rowSums(SinrMatrix), block %.0e", size), c("library(scinrcodec)", block(size)),
      sprintf("s <- DelayedArray::rowSums(SinrMatrix(%s))", q(sinr)))
if (reads && !is.null(mtx)) add("Matrix::readMM (10x mtx.gz)", "library(Matrix)",
                                sprintf("m <- readMM(file.path(%s, 'matrix.mtx.gz'))", q(mtx)))
# read10xCounts returns a SingleCellExperiment whose counts are a TENxMatrix on the .h5 (nothing
# read yet); as(, "dgCMatrix") brings them into memory, as the other readers do.
if (reads && !is.null(h5) && have("DropletUtils")) {
  add("DropletUtils::read10xCounts (.h5, counts left on disk)", "library(DropletUtils)",
      sprintf("m <- read10xCounts(%s)", q(h5)))
  add("DropletUtils::read10xCounts (.h5) + as(counts, 'dgCMatrix')", "library(DropletUtils)",
      sprintf("m <- as(counts(read10xCounts(%s)), 'dgCMatrix')", q(h5)))
}
if (reads && !is.null(h5) && have("Seurat"))
  add("Seurat::Read10X_h5 (.h5)", "library(Seurat)", sprintf("m <- Read10X_h5(%s)", q(h5)))
if (!is.null(h5) && have("HDF5Array"))
  for (size in block_sizes)
    add(sprintf("rowSums(TENxMatrix) (.h5), block %.0e", size), c("library(HDF5Array)", block(size)),
        sprintf("s <- DelayedArray::rowSums(TENxMatrix(%s, 'matrix'))", q(h5)))

suppressPackageStartupMessages(library(scinrcodec))
h <- sinr_info(sinr)
date <- format(Sys.time(), "%Y-%m-%d")
cat(sprintf("%s (%s genes x %s cells, %s nonzeros): %s, %s, median of %d fresh processes%s\n\n", label,
            format(h$n_genes, big.mark = ","), format(h$n_cells, big.mark = ","), format(h$nnz, big.mark = ","),
            R.version.string, date, repeats, if (nzchar(vsize)) paste0(", R_VSIZE=", vsize) else ""))
cat("| read | seconds | CPU seconds | MiB after loading | peak MiB | load average |\n|---|---:|---:|---:|---:|---|\n")
for (what in names(rows)) {
  r <- rows[[what]]
  cat(sprintf("| %s | %.3f | %.3f | %.0f | %.0f | %.1f-%.1f |\n", what, r[["seconds"]], r[["cpu"]], r[["loaded_mib"]],
              r[["peak_mib"]], r[["load_min"]], r[["load_max"]]))
}
if (!is.null(csv)) {
  table <- data.frame(label = label, r_vsize = vsize, nnz = h$nnz, genes = h$n_genes, cells = h$n_cells, read = names(rows),
                      do.call(rbind, rows), repeats = repeats, date = date, r = R.version.string, row.names = NULL)
  utils::write.table(table, csv, sep = ",", row.names = FALSE, append = file.exists(csv),
                     col.names = !file.exists(csv))
}
