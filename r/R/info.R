# What `sinr info` prints about a .sinr file: format, shape, mode, layout and SIREN use.
# @param path a .sinr file.
# @param matrix the matrix (default the first).
# @return a list of class sinr_info (printed as `sinr info` prints it).
sinr_info <- function(path, matrix = NULL) {
  x <- sinr_open(path, matrix)
  h <- .header(x)
  structure(c(h, list(contents = .native(.sinr_contents(.handle(x))))), class = "sinr_info")
}

format.sinr_info <- function(x, ...) {
  n <- function(v) format(v, big.mark = ",", scientific = FALSE, trim = TRUE)
  counted <- function(v, noun, plural = paste0(noun, "s")) paste(n(v), if (v == 1) noun else plural)
  stat <- function(key) if (is.na(x$stats[key])) 0 else x$stats[[key]]
  cells <- if (length(x$chunk_starts) > 1L) max(diff(x$chunk_starts)) else 0
  density <- x$nnz / max(x$n_genes * x$n_cells, 1)
  mode <- if (x$mode == "max-error") sprintf("max-error (every entry within %s)", n(x$max_error)) else x$mode
  if (x$mode == "lossless" && !is.na(x$inputs_error)) {  # values decoded from lossy files (spec 12.7)
    mode <- paste(mode, if (x$inputs_error == -1) {
      "of values decoded from --inr-only files (SIREN predictions, not the counts)"
    } else {
      sprintf("of values decoded from lossy files (each within %s of the counts first encoded)", n(x$inputs_error))
    })
  }
  lines <- c(
    sprintf("file:      %s (%s bytes, format %s, %s)", x$path, n(x$file_size), x$version, x$writer),
    sprintf("shape:     %s x %s, %s (density %.2f%%)", counted(x$n_genes, "gene"), counted(x$n_cells, "cell"),
            counted(x$nnz, "nonzero"), 100 * density),
    sprintf("mode:      %s", mode),
    sprintf("layout:    %s of up to %s%s, %s, %s", counted(x$n_chunks, "chunk"), counted(cells, "cell"),
            if (x$n_segments > 1) sprintf(" in %s segments", n(x$n_segments)) else "", counted(stat("bands"), "band"),
            counted(stat("tiles"), "tile")),
    sprintf("SIREN:     tried in %s, kept in %s, saving %.4f bits per nonzero", counted(stat("siren_tried"), "band"),
            n(stat("siren_kept")), stat("siren_saved_bits") / max(x$nnz, 1)),
    sprintf("matrix:    %s (%s bytes; the file holds %s)", x$matrix, n(x$stored_bytes),
            paste(x$matrices, collapse = ", ")))
  if (nzchar(x$contents$object))
    lines <- c(lines, sprintf("contents:  a whole %s file; parts %s", x$contents$object,
                              paste(x$contents$elements, collapse = ", ")))
  lines
}

print.sinr_info <- function(x, ...) {
  cat(format(x), sep = "\n")
  invisible(x)
}
