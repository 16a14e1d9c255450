# Bioconductor and Seurat objects of a .sinr file: counts with the stored gene and cell names; the
# gene ids and feature types as row metadata; and for a file that holds a whole AnnData or 10x
# file, its obs and var columns of simple types (frames.R) as column and row metadata.

.gene_frame <- function(x) {
  cols <- list(gene_ids = .names(x, "gene_ids"), gene_names = .names(x, "gene_names"),
               feature_types = .names(x, "feature_types"))
  list2DF(cols[!vapply(cols, is.null, logical(1L))], nrow = x@dim[[1L]])
}

# Per-gene and per-cell columns of a file (data.frames without row names) and what they leave out.
# A whole AnnData's var is its genes' columns as anndata reads them; other files get the matrix's
# names (and a 10x file's other per-feature fields).
.metadata <- function(x) {
  stored <- .stored_frames(x)
  genes <- if (!is.null(stored$var) && .object(x) == "anndata") stored$var else .gene_frame(x)
  if (!is.null(stored$var) && .object(x) == "10x-h5")
    genes <- list2DF(c(as.list(genes), as.list(stored$var)[setdiff(names(stored$var), names(genes))]),
                     nrow = x@dim[[1L]])
  cells <- if (is.null(stored$obs)) list2DF(list(), nrow = x@dim[[2L]]) else stored$obs
  list(genes = genes, cells = cells, unmapped = stored$unmapped, parts = stored$parts)
}

.object <- function(x) .native(.sinr_contents(.handle(x)))$object

# Say what a file stores that these objects do not carry (never dropped silently).
.report_unmapped <- function(x, meta) {
  if (length(meta$parts)) {
    parts <- paste(meta$parts, collapse = ", ")
    message(if (.object(x) == "anndata") {
      sprintf(paste0("scinrcodec: %s also stores the AnnData parts %s, which the R objects do not carry (Python ",
                     "reads them: scinrcodec.read_sinr(path))"), x@path, parts)
    } else {
      sprintf(paste0("scinrcodec: %s also stores the 10x file's %s, which the R objects do not carry (Python ",
                     "writes the file back: scinrcodec.decode(path, \"out.h5\"))"), x@path, parts)
    })
  }
  if (length(meta$unmapped)) {
    message(sprintf(paste0("scinrcodec: %s: columns not of a simple type (numbers, strings, booleans, ",
                           "categoricals) are not mapped: %s"), x@path, paste(meta$unmapped, collapse = ", ")))
  }
  others <- setdiff(.header(x)$matrices, .header(x)$matrix)
  if (length(others)) {
    message(sprintf("scinrcodec: %s also holds the matrices %s (open one with matrix = \"...\")", x@path,
                    paste(others, collapse = ", ")))
  }
  invisible(NULL)
}

.data_frame <- function(frame, names) {
  out <- S4Vectors::DataFrame(frame, check.names = FALSE)
  rownames(out) <- names
  out
}

sinr_to_sce <- function(path, delayed = TRUE, matrix = NULL) {
  if (!requireNamespace("SingleCellExperiment", quietly = TRUE) || !requireNamespace("S4Vectors", quietly = TRUE))
    .sinr_stop("InvalidInputError", "sinr_to_sce needs the SingleCellExperiment package")
  x <- sinr_open(path, matrix)
  counts <- if (delayed) SinrMatrix(path, matrix) else read_sinr(path, matrix)
  dn <- dimnames(x)
  meta <- .metadata(x)
  .report_unmapped(x, meta)
  SingleCellExperiment::SingleCellExperiment(assays = list(counts = counts), rowData = .data_frame(meta$genes, dn[[1L]]),
                                             colData = .data_frame(meta$cells, dn[[2L]]))
}

# Names a Seurat object takes: "gene-3" for the third gene where the file stores no names or an empty
# one, which Seurat refuses ("Feature names of counts matrix cannot be empty").
.seurat_names <- function(names, what, n) {
  if (is.null(names)) names <- character(n)
  empty <- !nzchar(names)
  names[empty] <- paste0(what, "-", which(empty))
  names
}

sinr_to_seurat <- function(path, matrix = NULL, project = "scinrcodec") {
  if (!requireNamespace("SeuratObject", quietly = TRUE))
    .sinr_stop("InvalidInputError", "sinr_to_seurat needs the SeuratObject package")
  x <- sinr_open(path, matrix)
  if (any(x@dim == 0L))
    .sinr_stop("InvalidInputError", sprintf("%s holds %s genes x %s cells: a Seurat object needs at least one of each",
                                            x@path, format(x@dim[[1L]]), format(x@dim[[2L]])))
  counts <- .read_block(x, NULL, NULL, .threads())
  dn <- dimnames(x)
  genes <- .seurat_names(dn[[1L]], "gene", x@dim[[1L]])
  cells <- .seurat_names(dn[[2L]], "cell", x@dim[[2L]])
  features <- make.unique(gsub("_", "-", genes, fixed = TRUE))
  counts@Dimnames <- list(features, make.unique(cells))
  meta <- .metadata(x)
  .report_unmapped(x, meta)
  object <- SeuratObject::CreateSeuratObject(counts = counts, project = project, assay = "RNA")
  # the stored names, which the features' may differ from (a whole AnnData's var holds them only as its index)
  if (!is.null(dn[[1L]]) && !("gene_names" %in% names(meta$genes)))
    meta$genes <- list2DF(c(list(gene_names = dn[[1L]]), as.list(meta$genes)), nrow = x@dim[[1L]])
  if (ncol(meta$genes)) {
    rownames(meta$genes) <- features
    object[["RNA"]] <- SeuratObject::AddMetaData(object[["RNA"]], metadata = meta$genes)
  }
  if (ncol(meta$cells)) {
    rownames(meta$cells) <- colnames(object)
    object <- SeuratObject::AddMetaData(object, metadata = meta$cells)
  }
  object
}
