# The obs and var columns of a file that holds a whole AnnData, and the per-feature fields of one
# that holds a whole 10x file (spec §14): read from the HDF5 images of the file-level sections with
# hdf5r, ordered as the matrix's cells and genes. Columns of simple types (numbers, strings,
# booleans, categoricals, anndata's nullable integers, booleans and strings) become data frame
# columns; everything else is named in `unmapped`, which the converters report with message().

# The data frames of a file's stored columns: list(obs, var, unmapped, parts) where obs and var
# are data.frames (NULL: the file stores none) with one row per cell and gene of the matrix,
# unmapped the columns they leave out and parts the stored parts they do not carry.
.stored_frames <- function(x) {
  contents <- .native(.sinr_contents(.handle(x)))
  if (!nzchar(contents$object)) return(list(obs = NULL, var = NULL, unmapped = character(), parts = character()))
  if (!requireNamespace("hdf5r", quietly = TRUE)) {
    message("scinrcodec: install the hdf5r package to map the stored obs/var columns and per-feature fields")
    return(list(obs = NULL, var = NULL, unmapped = character(), parts = contents$elements))
  }
  if (contents$object == "10x-h5") .tenx_frames(x, contents) else .anndata_frames(x, contents)
}

# fun(file) of the HDF5 image of an element, open read-only from a temporary file; a failure to
# parse or read it is a corrupt file (spec §14.1 S5).
.with_image <- function(x, element, fun) {
  image <- .native(.sinr_element_image(.handle(x), element))
  path <- .write_temporary(x, element, image)
  on.exit(unlink(path))
  file <- NULL
  tryCatch({
    file <- hdf5r::H5File$new(path, mode = "r")
    fun(file)
  }, sinr_error = function(e) stop(e), error = function(e) {
    .sinr_stop("CorruptFileError", sprintf("%s: section '%s' does not hold what its contents entry says (%s)",
                                           x@path, .element_section(element), gsub("\\s+", " ", conditionMessage(e))))
  }, finally = if (!is.null(file)) file$close_all())
}

# A temporary file holding `image`, or an OutputError naming the temporary folder: writeBin only
# warns when a full or unwritable folder cuts the file short, which hdf5r then read as a corrupt
# section of a sound .sinr file. tempdir(check = TRUE) makes the session's folder again where a
# cleaner of /tmp removed it.
.write_temporary <- function(x, element, image) {
  path <- tempfile(fileext = ".h5", tmpdir = tempdir(check = TRUE))
  problem <- tryCatch({
    writeBin(image, path)
    ""
  }, warning = function(w) paste0(", ", conditionMessage(w)), error = function(e) paste0(", ", conditionMessage(e)))
  written <- file.size(path)
  if (is.na(written) || written != length(image)) {
    unlink(path)
    .sinr_stop("OutputError", sprintf(paste0("%s: cannot read section '%s': %s of its %s bytes written to a temporary ",
                                             "file in %s%s (is the folder full or not writable? TMPDIR names another)"),
                                      x@path, .element_section(element), format(max(written, 0, na.rm = TRUE),
                                      big.mark = ","), format(length(image), big.mark = ","), dirname(path), problem))
  }
  path
}

.element_section <- function(element) if (element == "h5") "10x.h5" else paste0("anndata.", element)

# An attribute's value; an empty attribute (anndata writes `column-order` of a frame without columns
# as an empty array) is character(0): hdf5r cannot read a zero-size attribute.
.attr <- function(object, name) {
  if (!object$attr_exists(name)) return(NULL)
  attribute <- object$attr_open(name)
  on.exit(attribute$close())
  if (prod(attribute$get_space()$dims) == 0) return(character(0))
  hdf5r::h5attr(object, name)
}

# A 1-D dataset of n values as an R vector (64-bit integers as doubles, with a warning naming the
# column `what` where one is beyond 2^53, which a double does not hold exactly); NULL when it is not one.
.vector <- function(object, n, what = "a column") {
  if (!inherits(object, "H5D") || length(object$dims) != 1L || object$dims != n) return(NULL)
  if (n == 0) return(character(0))  # hdf5r cannot read an empty string dataset; any empty vector maps the same
  value <- object$read()
  if (inherits(value, "integer64")) {
    value <- suppressWarnings(as.double(value))  # bit64's own warning names no column
    if (any(abs(value) > 2^53, na.rm = TRUE))
      warning(sprintf("scinrcodec: %s holds integers beyond 2^53, which R's doubles round", what), call. = FALSE)
  }
  if (!is.atomic(value) || !(typeof(value) %in% c("logical", "integer", "double", "character"))) return(NULL)
  as.vector(value)
}

# One column of an anndata dataframe group (anndata's encodings: array, string-array, categorical,
# nullable-integer, nullable-boolean, nullable-string-array), or NULL when it maps to none.
.column <- function(object, n, what) {
  encoding <- .attr(object, "encoding-type")
  if (is.null(encoding)) return(NULL)
  if (encoding %in% c("array", "string-array")) return(.vector(object, n, what))
  if (!inherits(object, "H5Group")) return(NULL)
  member <- function(name) if (object$exists(name)) .vector(object[[name]], n, what) else NULL
  if (encoding %in% c("nullable-integer", "nullable-boolean", "nullable-string-array")) {
    values <- member("values")
    mask <- member("mask")
    if (is.null(values) || !is.logical(mask)) return(NULL)
    values[mask] <- NA
    return(values)
  }
  if (encoding == "categorical") {
    codes <- member("codes")
    levels <- if (object$exists("categories")) .vector(object[["categories"]], object[["categories"]]$dims) else NULL
    if (!is.numeric(codes) || is.null(levels) || anyNA(codes) || any(codes >= length(levels))) return(NULL)
    levels <- as.character(levels)
    if (anyDuplicated(levels)) return(NULL)
    codes <- as.integer(codes) + 1L
    codes[codes < 1L] <- NA_integer_
    ordered <- isTRUE(as.logical(.attr(object, "ordered")))
    return(structure(codes, levels = levels, class = c(if (ordered) "ordered", "factor")))
  }
  NULL
}

# An anndata dataframe group as a data.frame of n rows (columns in its column-order), and the
# columns it could not map ("part/column").
.read_frame <- function(group, n, part) {
  order <- as.character(.attr(group, "column-order"))
  columns <- list()
  unmapped <- character()
  for (name in order) {
    value <- if (group$exists(name)) .column(group[[name]], n, paste0(part, "/", name)) else NULL
    if (is.null(value)) unmapped <- c(unmapped, paste0(part, "/", name)) else columns[[name]] <- value
  }
  list(frame = list2DF(columns, nrow = n), unmapped = unmapped)
}

.anndata_frames <- function(x, contents) {
  element <- NULL
  for (entry in contents$map$matrices) if (identical(entry$matrix, x@matrix)) element <- entry$element
  elements <- contents$elements
  raw <- identical(element, "raw/X")
  var_element <- if (raw) "raw" else "var"  # the genes of raw.X are raw/var's
  out <- list(obs = NULL, var = NULL, unmapped = character(), parts = setdiff(elements, c("obs", var_element)))
  frame <- function(file, path, n, what) {
    if (!file$exists(path) || .frame_rows(file[[path]]) != n)
      .sinr_stop("CorruptFileError", sprintf("%s: the stored %s does not have the matrix's %s %s", x@path, path,
                                             format(n, big.mark = ","), what))
    read <- .read_frame(file[[path]], n, path)
    out$unmapped <<- c(out$unmapped, read$unmapped)
    read$frame
  }
  if ("obs" %in% elements) out$obs <- .with_image(x, "obs", function(file) frame(file, "obs", x@dim[[2L]], "cells"))
  if (var_element %in% elements && raw) {
    out$var <- .with_image(x, "raw", function(file) {
      if (!file$exists("raw/var")) return(NULL)
      rest <- setdiff(names(file[["raw"]]), "var")
      if (length(rest)) out$parts <<- c(out$parts, paste0("raw/", rest))
      frame(file, "raw/var", x@dim[[1L]], "genes")
    })
  } else if (var_element %in% elements) {
    var <- .with_image(x, "var", function(file) frame(file, "var", x@dim[[1L]], "genes"))
    out$var <- .with_gene_ids(x, var, contents$map$names_in$var, contents)
  }
  out
}

# Rows of an anndata dataframe: the length of its index dataset.
.frame_rows <- function(group) {
  index <- .attr(group, "_index")
  if (is.null(index) || !group$exists(index)) return(-1)
  dims <- group[[index]]$dims
  if (length(dims) != 1L) -1 else dims
}

# var's gene_ids column, which the image leaves out when a matrix holds the ids (spec §14.2
# names_in): the ids of that matrix, put back at gene_ids_at.
.with_gene_ids <- function(x, frame, entry, contents) {
  at <- entry$gene_ids_at
  if (is.null(at)) return(frame)
  holder <- NULL
  for (m in contents$map$matrices) if (identical(m$element, entry$matrix)) holder <- m$matrix
  ids <- if (is.null(holder)) NULL else if (holder == x@matrix) .names(x, "gene_ids") else
    .names(sinr_open(x@path, holder), "gene_ids")
  if (is.null(ids) || length(ids) != nrow(frame) || !is.numeric(at) || at < 0 || at > ncol(frame))
    .sinr_stop("CorruptFileError", sprintf("%s: contents entry names_in/var places gene_ids impossibly", x@path))
  columns <- as.list(frame)
  list2DF(append(columns, list(gene_ids = ids), after = at), nrow = nrow(frame))
}

# A 10x file: the per-feature fields of its features group besides id, name and feature_type
# (which the matrix holds): genome and any other, as scanpy.read_10x_h5 puts them in var.
.tenx_frames <- function(x, contents) {
  group <- contents$map$group
  features <- paste0(group, "/features")
  held <- c("id", "name", "feature_type", "_all_tag_keys")  # the matrix's names; the list of tag fields
  .with_image(x, "h5", function(file) {
    columns <- list()
    unmapped <- character()
    if (file$exists(features) && inherits(file[[features]], "H5Group")) {
      for (name in setdiff(names(file[[features]]), held)) {
        value <- .vector(file[[features]][[name]], x@dim[[1L]], paste0(features, "/", name))
        if (is.null(value)) unmapped <- c(unmapped, paste0(features, "/", name)) else columns[[name]] <- value
      }
    }
    outside <- Filter(function(p) !startsWith(p, paste0(group, "/")), hdf5r::list.datasets(file))
    attributes <- hdf5r::list.attributes(file)
    list(obs = NULL, var = list2DF(columns, nrow = x@dim[[1L]]), unmapped = unmapped,
         parts = c(outside, if (length(attributes)) paste0("attributes (", paste(attributes, collapse = ", "), ")")))
  })
}
