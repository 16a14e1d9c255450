# Bioconductor and Seurat objects of a .sinr file: counts with the stored gene and cell names, and
# the gene ids and feature types as row metadata.

.gene_frame <- function(x) {
  cols <- list(gene_ids = .names(x, "gene_ids"), gene_names = .names(x, "gene_names"),
               feature_types = .names(x, "feature_types"))
  cols[!vapply(cols, is.null, logical(1L))]
}

# Say what a file stores that these objects do not carry (never dropped silently).
.report_unmapped <- function(x) {
  contents <- .native(.sinr_contents(.handle(x)))
  if (nzchar(contents$object) && length(contents$elements)) {
    message(sprintf(paste0("scinrcodec: %s also stores the %s parts %s, which the R reader does not map yet ",
                           "(Python reads them: scinrcodec.open(path).to_anndata())"),
                    x@path, contents$object, paste(contents$elements, collapse = ", ")))
  }
  others <- setdiff(.header(x)$matrices, .header(x)$matrix)
  if (length(others)) {
    message(sprintf("scinrcodec: %s also holds the matrices %s (open one with matrix = \"...\")", x@path,
                    paste(others, collapse = ", ")))
  }
  invisible(NULL)
}

# A SingleCellExperiment of a .sinr file.
# @param path a .sinr file.
# @param delayed TRUE: counts as a SinrMatrix read block by block; FALSE: a dgCMatrix in memory.
# @param matrix the matrix (default the first).
sinr_to_sce <- function(path, delayed = TRUE, matrix = NULL) {
  if (!requireNamespace("SingleCellExperiment", quietly = TRUE) || !requireNamespace("S4Vectors", quietly = TRUE))
    .sinr_stop("InvalidInputError", "sinr_to_sce needs the SingleCellExperiment package")
  x <- sinr_open(path, matrix)
  counts <- if (delayed) SinrMatrix(path, matrix) else read_sinr(path, matrix)
  dn <- dimnames(x)
  rows <- do.call(S4Vectors::DataFrame, c(.gene_frame(x), list(check.names = FALSE)))
  if (!length(.gene_frame(x))) rows <- S4Vectors::DataFrame(matrix(nrow = x@dim[[1L]], ncol = 0L))
  rownames(rows) <- dn[[1L]]
  cols <- S4Vectors::DataFrame(matrix(nrow = x@dim[[2L]], ncol = 0L))
  rownames(cols) <- dn[[2L]]
  .report_unmapped(x)
  SingleCellExperiment::SingleCellExperiment(assays = list(counts = counts), rowData = rows, colData = cols)
}

# A Seurat object (SeuratObject) of a .sinr file: counts in memory, in assay "RNA".
# Seurat needs unique feature names without underscores: duplicates get make.unique suffixes and
# underscores become dashes; the stored names stay in the assay's feature metadata.
# @param path a .sinr file.
# @param matrix the matrix (default the first).
# @param project the Seurat project name.
sinr_to_seurat <- function(path, matrix = NULL, project = "scinrcodec") {
  if (!requireNamespace("SeuratObject", quietly = TRUE))
    .sinr_stop("InvalidInputError", "sinr_to_seurat needs the SeuratObject package")
  x <- sinr_open(path, matrix)
  counts <- .read_block(x, NULL, NULL, .threads())
  dn <- dimnames(x)
  genes <- if (is.null(dn[[1L]])) paste0("gene-", seq_len(x@dim[[1L]])) else dn[[1L]]
  cells <- if (is.null(dn[[2L]])) paste0("cell-", seq_len(x@dim[[2L]])) else dn[[2L]]
  features <- make.unique(gsub("_", "-", genes, fixed = TRUE))
  counts@Dimnames <- list(features, make.unique(cells))
  .report_unmapped(x)
  object <- SeuratObject::CreateSeuratObject(counts = counts, project = project, assay = "RNA")
  meta <- as.data.frame(.gene_frame(x), stringsAsFactors = FALSE)
  if (ncol(meta)) {
    rownames(meta) <- features
    object[["RNA"]] <- SeuratObject::AddMetaData(object[["RNA"]], metadata = meta)
  }
  object
}
